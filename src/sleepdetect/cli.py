"""`python -m sleepdetect <command>`: the pipeline's entry points.

Each command imports its module only when it runs, so `score` stays light and nothing imports
lightning, papermill or kaggle unless that command needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_synth(args: argparse.Namespace) -> int:
    from sleepdetect.data.synthetic import write_synthetic

    paths = write_synthetic(args.out, n_series=args.series, days=args.days, seed=args.seed)
    for p in paths:
        print(p)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from sleepdetect.config import load_config
    from sleepdetect.data.prepare import MANIFEST, prepare

    params, overrides = args.params, list(args.overrides)
    if params is not None and "=" in params:  # only overrides were given
        params, overrides = None, [params, *overrides]
    manifest = prepare(load_config(params, overrides))
    print(manifest.root / MANIFEST)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from sleepdetect.scoring import score_command

    return score_command(args.solution, args.submission)


def _cmd_models(args: argparse.Namespace) -> int:
    from sleepdetect.models import models_command

    return models_command(check=args.check)


def _cmd_run(args: argparse.Namespace) -> int:
    from sleepdetect.pipeline import run

    stages = args.only.split(",") if args.only else None
    return run(args.params, args.overrides, stages=stages, force=args.force)


def _cmd_tune(args: argparse.Namespace) -> int:
    from sleepdetect.config import load_config
    from sleepdetect.tune import tune

    tune(load_config(args.params, args.overrides))
    return 0


def _cmd_package(args: argparse.Namespace) -> int:
    from sleepdetect.config import load_config
    from sleepdetect.kaggle import package

    package(load_config(args.params, args.overrides), args.exp, do_upload=args.upload)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sleepdetect", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic competition files (official schema)")
    p.add_argument("--out", required=True, help="folder for the three competition files")
    p.add_argument("--series", type=int, default=8, help="number of series")
    p.add_argument("--days", type=float, default=6.0, help="mean days per series")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("prepare", help="read + validate + build feature arrays (01_prepare)")
    p.add_argument(
        "params", nargs="?", default=None, help="params/*.yaml (default: the built-in defaults)"
    )
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("score", help="event detection AP of a submission against labels")
    p.add_argument("solution", help="labels CSV: series_id, event, step (e.g. train_events.csv)")
    p.add_argument("submission", help="submission CSV: row_id, series_id, step, event, score")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("models", help="list registered model components")
    p.add_argument("--check", action="store_true", help="build each and run forward+backward")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("run", help="run the notebooks through papermill")
    p.add_argument("params", help="params/*.yaml")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides; a=1,2 sweeps")
    p.add_argument("--only", default=None, help="comma list of stages, e.g. prepare,infer")
    p.add_argument("--force", action="store_true", help="rerun stages that are already done")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "tune",
        help="choose post-processing on out-of-fold predictions, nested (reads <exp>/oof.parquet)",
        description="Searches tune.grid on the OOF predictions of every fold: for each fold, "
        "the setting best on the other folds scores it; prints that nested score with a "
        "bootstrap interval over nights, writes the setting chosen on all folds to "
        "<exp>/tune/postprocess.yaml (03_infer uses it with infer.tuned=true). "
        "Example: python -m sleepdetect tune params/real-sample.yaml",
    )
    p.add_argument("params", help="params/*.yaml of a trained experiment")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. tune.bootstrap=0")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("package", help="build the Kaggle datasets and kernel (and upload)")
    p.add_argument("--exp", action="append", required=True, help="trained experiment; repeat")
    p.add_argument("--params", default="params/kaggle.yaml", help="params with a kaggle section")
    p.add_argument("--upload", action="store_true", help="run the kaggle commands")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. kaggle.username=me")
    p.set_defaults(func=_cmd_package)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sleepdetect.config import ConfigError
    from sleepdetect.errors import InputError
    from sleepdetect.registry import UnknownComponentError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may also follow options (`run p.yaml --only infer a.b=1`)
    if extra and hasattr(args, "overrides") and all("=" in e for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except (ConfigError, InputError, UnknownComponentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
