"""The experiment folder `<output.dir>/<exp_name>/`, laid out once: every stage, notebook,
bench script and test asks here where a file goes, so a name is spelled in one place.

```
<exp>/
  config.yaml, 0N_<stage>.ipynb   the run's resolved config and executed notebooks (run)
  .stages/<stage>.json            what each stage ran with (run skips it when unchanged)
  prepared/<phase>/               01_prepare: features/, events.csv, manifest.json
  fold<k>[-seed<j>]/              02_train: one bundle (model.pt + config.yaml), its OOF scores
  oof.parquet, oof.json           every fold's OOF scores, and the models that made them
  oof_metrics.csv                 their score
  tune/                           post-processing chosen with nested folds
  infer/<phase>/                  03_infer: submission.csv (+ .json), metrics.csv, report
```
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sleepdetect.config import Config
from sleepdetect.core.fingerprints import file_hash
from sleepdetect.core.paths import bundle_folders, project_root

MODEL_FILE = "model.pt"  # a bundle's weights; written last, so it marks a fold complete
FOLD_OOF = "oof.parquet"  # a fold model's out-of-fold scores, beside its bundle
_FOLD = re.compile(r"^fold(\d+)(?:-seed(\d+))?$")


class Experiment:
    """The paths of one experiment folder (nothing is created or read here)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def of(cls, cfg: Config) -> Experiment:
        return cls(cfg.exp_dir)

    def __repr__(self) -> str:
        return f"Experiment({str(self.root)!r})"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def stage_record(self, stage: str) -> Path:
        return self.root / ".stages" / f"{stage}.json"

    def notebook(self, name: str) -> Path:
        """The executed copy of notebook `name` (e.g. 02_train)."""
        return self.root / f"{name}.ipynb"

    def prepared(self, phase: str) -> Path:
        return self.root / "prepared" / phase

    def fold(self, fold: int, member: int = 0) -> Path:
        """Model `member` of fold `fold` (trainer.seeds): fold<k>, then fold<k>-seed<j>."""
        return self.root / (f"fold{fold}" if member == 0 else f"fold{fold}-seed{member}")

    def folds(self) -> list[Path]:
        """Every fold folder, trained or not, in name order."""
        return [p for p in sorted(self.root.glob("fold*")) if _FOLD.match(p.name)]

    def bundles(self, seeds: int | None = None) -> list[Path]:
        """The trained fold folders (model.pt present), in name order; with `seeds`, only the
        first `seeds` models of each fold (those of the OOF scores)."""
        return [
            p
            for p in self.folds()
            if (p / MODEL_FILE).is_file()
            and (seeds is None or int(_FOLD.match(p.name).group(2) or 0) < seeds)
        ]

    def fold_plots(self) -> list[Path]:
        return sorted(self.root.glob("fold*/*.png"))

    def fold_metrics(self) -> list[Path]:
        return sorted(self.root.glob("fold*/metrics.csv"))

    @property
    def oof(self) -> Path:
        return self.root / "oof.parquet"

    @property
    def oof_record(self) -> Path:
        return self.root / "oof.json"

    @property
    def oof_metrics(self) -> Path:
        return self.root / "oof_metrics.csv"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def tuned(self) -> Path:
        """The post-processing tune chose, with the OOF record it was chosen on."""
        return self.tune / "postprocess.yaml"

    def infer(self, phase: str) -> Path:
        return self.root / "infer" / phase

    def submission(self, phase: str) -> Path:
        return self.infer(phase) / "submission.csv"

    def infer_files(self, name: str) -> list[Path]:
        """`name` (submission.csv, metrics.csv...) of every phase inferred."""
        return sorted(self.root.glob(f"infer/*/{name}"))


def averaged_bundles(cfg: Config, root: Path = Path()) -> list[Path]:
    """The bundles 03_infer averages: `infer.bundles`, or this experiment's trained folds, the
    first `trainer.seeds` models of each (those of its OOF scores); relative ones under `root`.
    `run` fingerprints the same list, so a retrained member reruns inference."""
    if cfg.infer.bundles:
        return [root / b for b in cfg.infer.bundles]
    return Experiment(root / cfg.exp_dir).bundles(cfg.trainer.seeds)


def model_sha256(bundle: str | Path, root: Path | None = None) -> str | None:
    """sha256 of a bundle's model.pt (None while it is not trained); of an ensemble folder,
    the sha256 of its members' in order. A relative `bundle` is taken from `root`, by default
    the checkout root, where every stage runs."""
    folder = (root or project_root() or Path.cwd()) / bundle
    members = bundle_folders(str(folder))
    if len(members) > 1:
        return hashlib.sha256(" ".join(model_sha256(m) for m in members).encode()).hexdigest()
    weights = folder / MODEL_FILE
    return file_hash(weights) if weights.is_file() else None
