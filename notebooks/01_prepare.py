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
# # 01 prepare: competition files -> feature arrays
#
# **Requires** `data.dir` holding `train_series.parquet` + `train_events.csv` (phase `train`) or
# `test_series.parquet` (phase `test`). An empty or missing `data.dir` is filled with synthetic
# data in the official schema, so the defaults run anywhere.
#
# **Outputs** `<output.dir>/<exp_name>/prepared/<phase>/`: one float32 array per series
# (`features/<series_id>.npy`, row = step), the validated `events.csv`, `manifest.json` and the
# resolved `config.yaml`.

# %% tags=["parameters"]
params_file = "params/demo.yaml"
overrides = []

# %%
from IPython.display import Image

from sleepdetect.config import load_config
from sleepdetect.core.paths import enter_project_root
from sleepdetect.stages.prepare import prepare, series_picture

enter_project_root()
cfg = load_config(params_file, overrides)
cfg.prepare

# %%
manifest = prepare(cfg)
print(f"{len(manifest.series)} series, features: {', '.join(manifest.feature_names)}")

# %% [markdown]
# ## What the data look like
#
# The first series: arm angle and acceleration over local time, the labelled onsets (green)
# and wakeups (red) with the sleep between them shaded, and in grey the stretches where the
# device was not worn (days the recording repeats exactly, the `day_repeat` feature). Saved as
# `<series_id>.png` beside the arrays.

# %%
Image(filename=series_picture(manifest))
