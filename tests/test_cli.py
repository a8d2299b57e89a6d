"""The command line reads like a manual: what each command reads and writes, with examples."""

from __future__ import annotations

import pytest

from sleepdetect.cli import build_parser, main


def test_no_command_prints_the_pipeline_and_the_two_make_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "make demo" in out and "make test" in out
    for stage in ("prepare", "train", "infer"):
        assert stage in out


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _commands())
def test_each_command_says_what_it_reads_and_writes_and_shows_examples(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "Reads" in out or "Prints" in out or "Writes" in out, out
    assert f"examples:\n  python -m sleepdetect {command}" in out


def test_every_example_parses(capsys):
    """The examples in the help are real command lines of this parser."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        for line in command.epilog.splitlines()[1:]:
            argv = line.split()[3:]  # after `python -m sleepdetect`
            args, extra = parser.parse_known_args(argv)
            assert args.command == name and all("=" in e for e in extra), line


def test_models_lists_every_model_and_the_baselines_beside_them(capsys):
    """`models` answers "what can I predict with": each registered model with its size, and
    each baseline (HDCZA) with the features it reads, though a baseline trains nothing."""
    from sleepdetect.baselines.hdcza import BASELINES
    from sleepdetect.models import MODELS

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    tables = out.split("\n\n")
    models = next(t for t in tables if t.startswith("model "))
    baselines = next(t for t in tables if t.startswith("baseline"))
    for name in MODELS.names():
        assert any(line.split()[0] == name for line in models.splitlines()[2:]), name
    assert BASELINES.names() and "hdcza" in BASELINES.names()
    for name in BASELINES.names():
        row = next(line for line in baselines.splitlines()[2:] if line.split()[0] == name)
        assert all(f in row for f in BASELINES.get(name).features)


def test_synth_raw_writes_a_recording_convert_reads(tmp_path, capsys):
    path = tmp_path / "wrist.csv"
    assert main(["synth", "--raw", str(path), "--days", "4", "--hz", "5"]) == 0
    assert "1 nap" in capsys.readouterr().out
    assert path.read_text().splitlines()[0] == "time,x,y,z"
    assert main(["convert", str(path), "--out", str(tmp_path / "out"), "--no-calibrate"]) == 0
    assert (tmp_path / "out" / "wrist.parquet").is_file()
    assert main(["synth"]) == 2  # neither --out nor --raw: one clear line
    assert "give --out FOLDER" in capsys.readouterr().err
