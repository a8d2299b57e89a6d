"""Does a model find the nights of people unlike the competition's children?

For each trait of the generator's `Variety` (a later schedule, the other wrist, a noisier
sensor, lying awake in bed, a device often off) and for the children themselves, generates a few
series with that trait alone and measures, for every labelled night, how far the model's top
onset score and top wakeup score (within 6 h of the night) land from the planted events. A model
that collapses on a trait shows it here: its median error grows from minutes to hours.

    .venv/bin/python bench/variety.py [BUNDLE ...]   # default: shipped:day_gru_synth
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sleepdetect.core.constants import STEPS_PER_HOUR, STEPS_PER_MINUTE
from sleepdetect.data import synthetic as syn
from sleepdetect.data.features import SeriesSignals, build_features
from sleepdetect.inference.bundles import Bundle
from sleepdetect.inference.ensemble import ensemble_scores
from sleepdetect.stages.predict import load_model

TRAITS = {
    "children": syn.Variety(),
    "later schedule": syn.Variety(onset_shift_h=3.0, sleep_shift_h=-1.5),
    "other wrist": syn.Variety(mirrored=True),
    "noisier sensor": syn.Variety(noise_g=0.008, noise_deg=0.4),
    "awake in bed": syn.Variety(awake_in_bed_min=80),
    "often off": syn.Variety(nonwear_factor=5.0),
}


def top_event_errors(bundles: list[Bundle], variety: syn.Variety, n_series: int = 4) -> np.ndarray:
    """(nights, 2) minutes between each labelled night's planted onset and wakeup and the
    model's (the bundles' mean) top score for that event within 6 h of the night."""
    errors = []
    for i in range(10, 10 + n_series):
        plan = syn.make_plan(5, syn.TRAIN, i, 5.0, variety=variety)
        anglez, enmo = syn.generate_signal(plan, 5, syn.TRAIN, i)
        clock = syn.timestamps(plan).str.slice(11, 8).str.split(":").to_list()
        seconds = np.array([int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in clock], np.int32)
        features = build_features(SeriesSignals(anglez, enmo, seconds),
                                  bundles[0].config.prepare.features)  # fmt: skip
        scores = ensemble_scores(bundles, [1.0] * len(bundles), features, None, 16, "cpu")
        for k in np.flatnonzero(plan.labelled):
            planted = np.array([plan.onset[k], plan.wakeup[k]])
            lo, hi = planted[0] - 6 * STEPS_PER_HOUR, planted[1] + 6 * STEPS_PER_HOUR
            if lo < 0 or hi > plan.n_steps:
                continue
            top = lo + np.argmax(scores[lo:hi], axis=0)
            errors.append(np.abs(top - planted) / STEPS_PER_MINUTE)
    return np.array(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", default=["shipped:day_gru_synth"])
    args = parser.parse_args()
    rows = []
    print("model                       trait            nights  onset median  within 30 min"
          "  wakeup median  within 30 min")  # fmt: skip
    for path in args.bundles:
        _, bundles = load_model(path)
        for trait, variety in TRAITS.items():
            e = top_event_errors(bundles, variety)
            row = {"model": path, "trait": trait, "nights": len(e),
                   "onset_median_min": float(np.median(e[:, 0])),
                   "onset_within_30": float((e[:, 0] < 30).mean()),
                   "wakeup_median_min": float(np.median(e[:, 1])),
                   "wakeup_within_30": float((e[:, 1] < 30).mean())}  # fmt: skip
            rows.append(row)
            print(f"{path[-27:]:27} {trait:16} {len(e):6}  {row['onset_median_min']:9.1f} min"
                  f"  {row['onset_within_30']:13.2f}  {row['wakeup_median_min']:10.1f} min"
                  f"  {row['wakeup_within_30']:13.2f}")  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
