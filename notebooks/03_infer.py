# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 infer: bundles -> per-series scores -> ensemble -> post-process -> submission.csv
#
# **Requires** one or more bundles (`fold<k>/` folders of 02_train: `model.pt` + `config.yaml`;
# default: every fold of this experiment) and the series of `infer.phase` (prepared here with the
# bundles' features when they are not yet).
#
# **Outputs** `<output.dir>/<exp_name>/infer/<phase>/submission.csv` (validated), and, when the
# phase has labels, `metrics.csv` and `nights.png`. Imports no Lightning: this notebook runs in
# the offline Kaggle kernel.

# %% tags=["parameters"]
params_file = "params/demo.yaml"
overrides = []
series_id = ""  # the series to picture and report; empty: the first one
pictures = True  # the picture and the report below; the Kaggle kernel sets False

# %%
import polars as pl
from IPython.display import Image, display

from sleepdetect.config import load_config
from sleepdetect.core.paths import enter_project_root
from sleepdetect.stages.infer import infer, score_picture, series_report

enter_project_root()
cfg = load_config(params_file, overrides)
cfg.infer

# %%
submission = infer(cfg)
pl.read_csv(submission).sort("score", descending=True).head(10)

# %% [markdown]
# ## One series, as the model sees it
#
# The ensemble's per-step onset and wakeup scores over the whole series (`series_id`), the
# candidates the post-processing kept (dots, at their scores) and, when the phase has labels,
# the true events (dashed). Saved as `scores-<series_id>.png` beside the submission.

# %%
if pictures:  # off in the Kaggle kernel
    display(Image(filename=score_picture(cfg, submission, series_id)))

# %% [markdown]
# ## Sleep report
#
# One onset and one wakeup per noon-to-noon night from the candidates (the rule printed below),
# with the sleep period's duration and the not-worn minutes of that day: `report.csv` beside the
# submission for every series (`python -m sleepdetect report PARAMS` does the same from a
# shell), the nights and the double-plotted actogram of `series_id` here.

# %%
if pictures:  # off in the Kaggle kernel
    display(Image(filename=series_report(cfg, submission, series_id)))
