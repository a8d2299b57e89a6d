"""The README and docs/ stay true to the code: every module is named in docs/DESIGN.md (and
every file its layout names exists), every relative link and #anchor resolves, and every
command example parses (`sleepdetect` arguments with the CLI's own parser, `make` targets,
`bench/` scripts and `params/` files exist)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from sleepdetect.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sleepdetect"
DOCS = ROOT / "docs"
DESIGN = DOCS / "DESIGN.md"
DOC_FILES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
CODE_SPAN = re.compile(r"(`+).*?\1")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# ---------------------------------------------------------------- markdown parsing


@dataclass
class Block:
    lang: str
    lines: list[tuple[int, str]]  # (line number, text)


def split_markdown(text: str) -> tuple[list[tuple[int, str]], list[Block]]:
    """(lines outside fenced code blocks, the fenced blocks), with 1-based line numbers."""
    prose: list[tuple[int, str]] = []
    blocks: list[Block] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                blocks.append(Block(m.group(2).lower(), []))
            else:
                prose.append((number, line))
        elif line.strip().startswith(fence) and not line.strip()[len(fence) :].strip():
            fence = None
        else:
            blocks[-1].lines.append((number, line))
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, lowercased, characters other than
    letters, digits, spaces, hyphens and underscores removed, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file; duplicates get -1, -2, ... as on GitHub."""
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose:
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def link_problems(path: Path) -> list[str]:
    """Relative links (and images) of one markdown file that do not resolve, or whose
    #anchor is no heading of the target."""
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    problems = []
    for number, line in prose:
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if SCHEME.match(target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{rel(path)}:{number}: {target}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor:
                if dest.suffix != ".md":
                    problems.append(f"{where}: an anchor into a file that is not markdown")
                elif anchor not in anchors(dest):
                    problems.append(f"{where}: no heading with anchor #{anchor} in {dest.name}")
    return problems


# ---------------------------------------------------------------- command examples


@dataclass
class Command:
    path: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{rel(self.path)}:{self.line}: {self.text}"


SLEEPDETECT = re.compile(r"^(?:\S*/)?python3?\s+-m\s+sleepdetect(?:\s|$)|^sleepdetect(?:\s|$)")
BENCH = re.compile(r"^(?:\S*/)?python3?\s+bench/")
CHECKED = re.compile(rf"{SLEEPDETECT.pattern}|{BENCH.pattern}|^make(?:\s|$)|^papermill\s")


def commands(path: Path) -> list[Command]:
    """The command lines of a file's fenced blocks: every line of a shell (or unlabelled)
    block, `$ ` lines of any block; continuations joined, the prompt stripped."""
    _, blocks = split_markdown(path.read_text(encoding="utf-8"))
    found = []
    for block in blocks:
        pending: tuple[int, str] | None = None
        for number, raw in block.lines:
            line = raw.strip()
            if pending is not None:
                number, line = pending[0], f"{pending[1]} {line}"
                pending = None
            if line.endswith("\\"):
                pending = (number, line[:-1].rstrip())
                continue
            if line.startswith("$ "):
                line = line[2:].strip()
            elif block.lang not in SHELL_LANGS:
                continue
            if CHECKED.match(line):
                found.append(Command(path, number, line))
    return found


def makefile_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.\- ]+):(?!=)", line)
        if m:
            targets.update(m.group(1).split())
    return targets


def parse_sleepdetect(argv: list[str]) -> str | None:
    """What `sleepdetect.cli.main` does with argv before running a command: None when it
    parses, else argparse's complaint."""
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args, extra = parser.parse_known_args(argv)
            if args.command is not None and extra:
                # main: overrides may follow options; anything else is an error
                if not (hasattr(args, "overrides") and all("=" in e for e in extra)):
                    parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:
        if e.code not in (0, None):  # --help exits 0
            return err.getvalue().strip() or f"exit status {e.code}"
    return None


def command_problems(command: Command) -> list[str]:
    try:
        words = shlex.split(command.text, comments=True)
    except ValueError as e:
        return [f"not a shell line: {e}"]
    problems = []
    for word in words:
        value = word.partition("=")[2] if "=" in word and not word.startswith("params/") else word
        if re.fullmatch(r"params/\S+\.ya?ml", value) and not (ROOT / value).is_file():
            problems.append(f"no params file {value}")
    if SLEEPDETECT.match(command.text):
        start = next(i for i, w in enumerate(words) if w.endswith("sleepdetect")) + 1
        complaint = parse_sleepdetect(words[start:])
        if complaint:
            problems.append(f"the CLI refuses it: {complaint}")
    elif words[0] == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        problems += [f"no make target {t!r}" for t in targets if t not in makefile_targets()]
    elif BENCH.match(command.text):
        script = words[1]
        if not (ROOT / script).is_file():
            problems.append(f"no script {script}")
    return problems


ALL_COMMANDS = [c for path in DOC_FILES for c in commands(path)]


# ---------------------------------------------------------------- the tests


def test_every_module_is_named_in_design():
    text = DESIGN.read_text(encoding="utf-8")
    modules = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if p.name != "__init__.py")
    assert len(modules) > 20, modules
    missing = [m for m in modules if not re.search(rf"(?<![\w/]){re.escape(m)}(?![\w/])", text)]
    assert not missing, f"modules not named in docs/DESIGN.md: {', '.join(missing)}"


def test_every_file_of_the_design_layout_exists():
    text = DESIGN.read_text(encoding="utf-8")
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    _, blocks = split_markdown(section)
    named = [
        line.split()[0].rstrip(",")
        for block in blocks
        for _, line in block.lines
        if line.strip() and line.split()[0].rstrip(",").endswith(".py")
    ]
    assert len(named) > 20, named
    absent = [n for n in named if not (SRC / n).is_file()]
    assert not absent, f"docs/DESIGN.md's layout names files that do not exist: {absent}"


@pytest.mark.parametrize("path", DOC_FILES, ids=rel)
def test_relative_links_and_anchors_resolve(path):
    problems = link_problems(path)
    assert not problems, "\n".join(problems)


def test_the_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {t.partition("#")[0] for t in LINK.findall(readme)}
    unlinked = [p.name for p in DOCS.glob("*.md") if f"docs/{p.name}" not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_examples_of_every_kind_are_found():
    kinds = {
        "sleepdetect": SLEEPDETECT,
        "make": re.compile(r"^make\b"),
        "bench": BENCH,
    }
    for kind, pattern in kinds.items():
        assert any(pattern.match(c.text) for c in ALL_COMMANDS), f"no {kind} example found"


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: f"{rel(c.path)}:{c.line}")
def test_command_examples_parse(command):
    problems = command_problems(command)
    assert not problems, f"{command}\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------- the checks themselves


def test_slugs_follow_githubs_rule():
    assert slug("Sleep report: one onset and one wakeup a night, and actograms") == (
        "sleep-report-one-onset-and-one-wakeup-a-night-and-actograms"
    )
    assert slug("`run`: stages, skipping, sweeps") == "run-stages-skipping-sweeps"
    assert slug("01_prepare: features") == "01_prepare-features"
    assert slug("The metric, precisely") == "the-metric-precisely"


def test_the_checks_catch_broken_docs(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Part\n\n## Part\n\n"
        "[ok](#part-1) [bad](#nope) [gone](missing.md) [web](https://example.com)\n"
        "`[in code](missing.md)`\n\n"
        "```bash\n"
        "python -m sleepdetect run params/demo.yaml --only prepare a.b=1   # fine\n"
        "python -m sleepdetect run --bogus params/demo.yaml\n"
        ".venv/bin/python -m sleepdetect prepare params/nope.yaml\n"
        "make no-such-target\n"
        "python bench/no_such_script.py \\\n  --full\n"
        "```\n",
        encoding="utf-8",
    )
    assert anchors(page) == {"title", "part", "part-1"}
    problems = link_problems(page)
    assert len(problems) == 2, problems
    assert "#nope" in problems[0] and "missing.md" in problems[1]
    found = commands(page)
    assert [c.line for c in found] == [11, 12, 13, 14, 15]
    verdicts = [command_problems(c) for c in found]
    assert verdicts[0] == []
    assert "unrecognized arguments" in verdicts[1][0] or "--bogus" in verdicts[1][0]
    assert verdicts[2] == ["no params file params/nope.yaml"]
    assert verdicts[3] == ["no make target 'no-such-target'"]
    assert verdicts[4] == ["no script bench/no_such_script.py"]
