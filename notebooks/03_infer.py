# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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

# %%
import polars as pl

from sleepdetect.config import load_config
from sleepdetect.inference import infer
from sleepdetect.paths import enter_project_root

enter_project_root()
cfg = load_config(params_file, overrides)
cfg.infer

# %%
submission = infer(cfg)
pl.read_csv(submission).sort("score", descending=True).head(10)
