"""`python -m sleepdetect <command>`: the pipeline's entry points.

Each command imports its module only when it runs, so `score` stays light and nothing imports
lightning, papermill or kaggle unless that command needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_synth(args: argparse.Namespace) -> int:
    from sleepdetect.core.errors import InputError
    from sleepdetect.data.synthetic import write_raw, write_synthetic

    if args.raw:
        truth = write_raw(args.raw, days=args.days, hz=args.hz, seed=args.seed)
        print(f"{args.raw}: {truth.plan.n_steps * 5 / 86400:.1f} days at {args.hz:g} Hz "
              f"(time zone America/New_York), {len(truth.plan.naps)} nap, "
              f"{len(truth.plan.nonwear)} not-worn stretch(es)")  # fmt: skip
        return 0
    if args.out is None:
        raise InputError("synth: give --out FOLDER (competition files) or --raw FILE")
    paths = write_synthetic(args.out, args.series, args.days, args.seed, args.variety)
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
    from sleepdetect.events.scoring import score_command

    return score_command(args.solution, args.submission)


def _cmd_models(args: argparse.Namespace) -> int:
    from sleepdetect.models.catalogue import models_command

    return models_command(check=args.check)


def _cmd_run(args: argparse.Namespace) -> int:
    from sleepdetect.pipeline import run

    stages = args.only.split(",") if args.only else None
    return run(args.params, args.overrides, stages=stages, force=args.force)


def _cmd_tune(args: argparse.Namespace) -> int:
    from sleepdetect.config import load_config
    from sleepdetect.cv.tune import tune

    tune(load_config(args.params, args.overrides))
    return 0


def _cmd_package(args: argparse.Namespace) -> int:
    from sleepdetect.config import load_config
    from sleepdetect.kaggle import package

    package(load_config(args.params, args.overrides), args.exp, do_upload=args.upload)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from sleepdetect.report import report_command

    return report_command(
        args.params, args.overrides, submission=args.submission, out=args.out, series=args.series
    )


def _convert_options(args: argparse.Namespace):
    from sleepdetect.devices.convert import Options

    return Options(
        sample_rate=args.sample_rate,
        timezone=args.timezone,
        utc_offset=args.utc_offset,
        start=args.start,
        calibrate=not args.no_calibrate,
    )


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sleepdetect.devices.convert import convert_command

    code, converted = convert_command(args.files, args.out, _convert_options(args), args.shard)
    if args.labels and converted:
        from sleepdetect.stages.labels import write_training

        for line in write_training(converted, Path(args.labels), Path(args.out)):
            print(f"  labels: {line}")
        print(f"training folder: {args.out} (train_series.parquet, train_events.csv)")
    return code


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sleepdetect.stages.predict import DEFAULT_MODEL, PredictOptions, predict_command

    options = PredictOptions(
        out=Path(args.out),
        model=args.model or DEFAULT_MODEL,
        convert=_convert_options(args),
        min_score=args.min_score,
        workers=args.workers,
        shard=args.shard,
        diary=Path(args.diary) if args.diary else None,
    )
    return predict_command(args.files, options)


def _device_arguments(p: argparse.ArgumentParser, out: str) -> None:
    """The recordings and the output folder, what a file may not say about itself, and how
    to split a batch (`convert` and `predict` alike)."""
    p.add_argument("files", nargs="+", help="recordings (device files, CSV, parquet) or folders")
    p.add_argument("--out", required=True, help=out)
    p.add_argument("--timezone", default=None, help="IANA zone, e.g. Europe/London (follows DST)")
    p.add_argument("--utc-offset", default=None, help="the device clock's offset, e.g. -05:00")
    p.add_argument("--sample-rate", type=float, default=None, help="Hz, when the file lacks it")
    p.add_argument("--start", default=None, help="a CSV without times: its first sample's time")
    p.add_argument("--no-calibrate", action="store_true", help="skip auto-calibration")
    p.add_argument("--shard", default=None, help="i/n: every n-th file from the i-th (job arrays)")


OVERVIEW = """\
sleepdetect: sleep onset and wakeup in wrist accelerometer series.

  prepare  read and check the competition files, build feature arrays  (01_prepare)
  train    fit a model on every fold, gather out-of-fold scores        (02_train)
  infer    predict, post-process, write a checked submission.csv       (03_infer)
  all      python -m sleepdetect run params/X.yaml runs the three; tune, report, package follow

  convert  device files (.gt3x, .bin, .cwa, raw CSV) -> 5-s series in the competition schema
  predict  recordings -> sleep per night with the shipped model: CSV + HTML report, no training

Start here: `make demo` (the whole pipeline on synthetic data), `make test` (the tests).
Each command: python -m sleepdetect COMMAND --help
"""


def _command(sub, name: str, summary: str, does: str, examples: list[str]):
    """A subcommand whose help says what it reads and writes, then real examples."""
    shown = "\n".join(f"  python -m sleepdetect {e}" for e in examples)
    return sub.add_parser(
        name,
        help=summary,
        description=f"{summary}.\n\n{does}",
        epilog=f"examples:\n{shown}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sleepdetect",
        description=OVERVIEW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _command(
        sub,
        "synth",
        "write synthetic competition files (official schema)",
        "Writes train_series.parquet, train_events.csv and test_series.parquet to --out: series\n"
        "drawn from a generator fitted to the real data, for trying everything without it.\n"
        "With --raw FILE instead, one raw recording of time, x, y, z (a device's samples) with\n"
        "nights, a nap and a not-worn day, for trying convert and predict.",
        [
            "synth --out data/synthetic --series 24 --days 6",
            "synth --raw data/raw/wrist01.parquet --days 4 --hz 30",
        ],  # fmt: skip
    )
    p.add_argument("--out", default=None, help="folder for the three competition files")
    p.add_argument("--raw", default=None, help="instead: one raw recording (.csv or .parquet)")
    p.add_argument("--hz", type=float, default=30.0, help="--raw: samples a second")
    p.add_argument("--series", type=int, default=8, help="number of series")
    p.add_argument("--days", type=float, default=6.0, help="mean days per series")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variety", type=float, default=0.0,
                   help="share of series from a wider population than the competition's "
                   "children: later schedules, the other wrist, other sensors")  # fmt: skip
    p.set_defaults(func=_cmd_synth)

    p = _command(
        sub,
        "prepare",
        "read, check and build the feature arrays (01_prepare)",
        "Reads data.dir's <phase>_series.parquet (and train_events.csv); writes\n"
        "<output.dir>/<exp_name>/prepared/<phase>/: manifest.json and one .npy per series.",
        ["prepare params/demo.yaml", "prepare params/real-sample.yaml prepare.phase=test"],
    )
    p.add_argument(
        "params", nargs="?", default=None, help="params/*.yaml (default: the built-in defaults)"
    )
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.set_defaults(func=_cmd_prepare)

    p = _command(
        sub,
        "score",
        "event detection AP of a submission against labels",
        "Reads the labels and a submission (CSV); prints the competition metric,\n"
        "onset and wakeup apart. Writes nothing.",
        ["score ../shared/data/cmi/train_events.csv outputs/demo/infer/train/submission.csv"],
    )
    p.add_argument("solution", help="labels CSV: series_id, event, step (e.g. train_events.csv)")
    p.add_argument("submission", help="submission CSV: row_id, series_id, step, event, score")
    p.set_defaults(func=_cmd_score)

    p = _command(
        sub,
        "models",
        "list the registered model components",
        "Prints the models, feature extractors and decoders by name with what they need;\n"
        "--check builds each small and runs a forward and backward pass.",
        ["models", "models --check"],
    )
    p.add_argument("--check", action="store_true", help="build each and run forward+backward")
    p.set_defaults(func=_cmd_models)

    p = _command(
        sub,
        "run",
        "run the notebooks through papermill (prepare, train, infer)",
        "Reads PARAMS and the data; writes <output.dir>/<exp_name>/: the executed notebooks,\n"
        "prepared/, fold<k>/ bundles, oof.parquet, infer/<phase>/submission.csv. A stage whose\n"
        "params and input files did not change is skipped; a=1,2 sweeps one experiment each.",
        [
            "run params/demo.yaml",
            "run params/real-sample.yaml --only infer infer.phase=test",
            "run params/demo.yaml optimizer.lr=0.001,0.003",
        ],
    )
    p.add_argument("params", help="params/*.yaml")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides; a=1,2 sweeps")
    p.add_argument("--only", default=None, help="comma list of stages, e.g. prepare,infer")
    p.add_argument("--force", action="store_true", help="rerun stages that are already done")
    p.set_defaults(func=_cmd_run)

    p = _command(
        sub,
        "tune",
        "choose post-processing on out-of-fold predictions, nested",
        "Reads <exp>/oof.parquet; searches tune.grid so that each fold is scored by the setting\n"
        "best on the other folds, prints that nested score with a bootstrap interval over\n"
        "nights, and writes the setting chosen on all folds to <exp>/tune/postprocess.yaml\n"
        "(03_infer uses it with infer.tuned=true).",
        ["tune params/real-sample.yaml", "tune params/real-sample.yaml tune.bootstrap=0"],
    )
    p.add_argument("params", help="params/*.yaml of a trained experiment")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. tune.bootstrap=0")
    p.set_defaults(func=_cmd_tune)

    p = _command(
        sub,
        "package",
        "build the Kaggle datasets and kernel (and upload)",
        "Reads the experiments' fold bundles and params/kaggle.yaml; writes kaggle_datasets/:\n"
        "the code wheel, the weights, the wheels and the offline submission kernel. Prints the\n"
        "kaggle commands, or runs them with --upload.",
        ["package --exp demo kaggle.username=me", "package --exp real-sample --upload"],
    )
    p.add_argument("--exp", action="append", required=True, help="trained experiment; repeat")
    p.add_argument("--params", default="params/kaggle.yaml", help="params with a kaggle section")
    p.add_argument("--upload", action="store_true", help="run the kaggle commands")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. kaggle.username=me")
    p.set_defaults(func=_cmd_package)

    p = _command(
        sub,
        "report",
        "sleep onset, wakeup and duration per night, with actograms",
        "Reads <exp>/infer/<phase>/submission.csv (or --submission) and the prepared series;\n"
        "picks one onset and one wakeup per noon-to-noon night (local time): onset before\n"
        "wakeup, highest onset score x wakeup score. Writes report.csv and\n"
        "actogram-<series_id>.png beside the submission (or in --out).",
        ["report params/demo.yaml", "report params/demo.yaml infer.phase=train --series ID"],
    )
    p.add_argument("params", help="params/*.yaml of an experiment that ran infer")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. infer.phase=train")
    p.add_argument(
        "--submission",
        default=None,
        help="submission.csv to report (default: <exp>/infer/<infer.phase>/submission.csv); "
        "its series must be in <exp>/prepared/<infer.phase>/",
    )
    p.add_argument("--out", default=None, help="folder for report.csv and the actograms")
    p.add_argument(
        "--series", action="append", default=None, help="report only this series; repeat"
    )
    p.set_defaults(func=_cmd_report)

    p = _command(
        sub,
        "convert",
        "device files -> 5-s series in the competition schema",
        "Reads ActiGraph .gt3x, GENEActiv .bin, Axivity .cwa (through actfast), or a CSV or\n"
        "parquet of time and x, y, z in g; writes OUT/<name>.parquet (series_id, step,\n"
        "timestamp, anglez, enmo, not_worn) and OUT/<name>.json (what it came from). Needs the\n"
        "`devices` extra: pip install -e '.[devices]'. A converted file is kept unless it changed.",
        [
            "convert recordings/ --out data/converted",
            "convert night.cwa --out data/converted --timezone Europe/London",
            "convert wrist.csv --out data/converted --timezone America/New_York --sample-rate 50",
        ],
    )
    _device_arguments(p, out="folder for the converted series")
    p.add_argument(
        "--labels", default=None, help="a diary CSV: also write train_series + train_events"
    )
    p.set_defaults(func=_cmd_convert)

    p = _command(
        sub,
        "predict",
        "sleep per night from recordings, with the model that ships",
        "Reads device files, raw CSV/parquet or competition-schema parquet (files or folders);\n"
        "converts, predicts with --model (default shipped:day_gru_synth: no training, no\n"
        "network) and writes OUT/<series_id>/report.html, report.csv, candidates.csv and\n"
        "actogram.png, and OUT/summary.csv. Done recordings are skipped unless they changed.",
        [
            "predict recordings/ --out reports",
            "predict wrist.csv --out reports --timezone Europe/London --diary diary.csv",
            "predict recordings/ --out reports --workers 2 --shard 1/4",
        ],
    )
    _device_arguments(p, out="folder for the reports")
    p.add_argument(
        "--model",
        default=None,
        help="a bundle folder, or an ensemble folder (ensemble.yaml) (default: the shipped one)",
    )
    p.add_argument(
        "--min-score", type=float, default=None, help="night threshold (default: the model's)"
    )
    p.add_argument("--diary", default=None, help="CSV of recording, date, onset, wakeup")
    p.add_argument("--workers", type=int, default=1, help="recordings processed at once")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sleepdetect.config import ConfigError
    from sleepdetect.core.errors import InputError
    from sleepdetect.core.registry import UnknownComponentError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:  # no command: the pipeline in brief and where to start
        print(OVERVIEW, end="")
        return 0
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
