"""How prepare, one training epoch and inference grow with the number of series (demo.yaml's
DayGRU and 10 features, synthetic series of the competition's length distribution).

    python bench/growth.py                  # 10, 50 and 277 series (about 15 min on 2 cores)
    python bench/growth.py --series 10 50

Each stage runs in its own process; memory is the peak PSS of it and its data-loader workers
(bench/scale.py). An epoch draws 4 windows a training series (5 folds by series, fold 0) and
validates every validation series. Prints a table, the cost per million steps (flat: linear
growth), where the memory would stop fitting, then one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import os

from scale import GB, measure_infer, measure_prepare, measure_train, windows_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10, 50, 277])
    args = parser.parse_args()

    rows = []
    for n in args.series:
        print(f"{n} series ...", flush=True)
        prep = measure_prepare(n)
        fit = measure_train(n)
        pred = measure_infer(n)
        rows.append({"series": n, "steps": prep["steps"], "prepare": prep, "train": fit,
                     "infer": pred})  # fmt: skip

    print(f"\ngrowth with the number of series ({os.cpu_count()} cores; GB = peak PSS)")
    print(
        f"{'series':>6} {'M steps':>8} | {'prepare s':>9} {'GB':>5} | {'epoch s':>7} "
        f"{'valid s':>7} {'win/s':>6} {'GB':>5} | {'infer s':>7} {'GB':>5}"
    )
    for r in rows:
        p, t, i = r["prepare"], r["train"], r["infer"]
        print(
            f"{r['series']:>6} {r['steps'] / 1e6:>8.1f} | {p['wall_s']:>9.1f} "
            f"{p['peak_pss_gb']:>5.2f} | {t['epoch_train_s']:>7.1f} {t['epoch_valid_s']:>7.1f} "
            f"{windows_per_s(t):>6.1f} {t['peak_pss_gb']:>5.2f} | {i['wall_s']:>7.1f} "
            f"{i['peak_pss_gb']:>5.2f}"
        )
    print("\nper million steps (flat columns = linear growth)")
    print(f"{'series':>6} | {'prepare s':>9} | {'epoch+valid s':>13} | {'infer s':>7}")
    for r in rows:
        m = r["steps"] / 1e6
        t = r["train"]
        print(
            f"{r['series']:>6} | {r['prepare']['wall_s'] / m:>9.2f} | "
            f"{(t['epoch_train_s'] + t['epoch_valid_s']) / m:>13.2f} | "
            f"{r['infer']['wall_s'] / m:>7.2f}"
        )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
        print(f"\nwhere memory stops fitting in this machine's {ram:.0f} GB (linear in series)")
        for stage in ("prepare", "train", "infer"):
            a, b = first[stage]["peak_pss_anon_gb"], last[stage]["peak_pss_anon_gb"]
            per_series = (b - a) / (last["series"] - first["series"])
            fits = "flat"
            if per_series > 0:
                fits = f"fits up to {(ram - a) / per_series + first['series']:,.0f} series"
            print(
                f"  {stage:<8} private {a:.2f} -> {b:.2f} GB: "
                f"{per_series * 1000:.1f} MB a series, {fits}"
            )
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
