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
# # 02 train: windows + targets -> model -> a bundle
#
# **Requires** the train folder of 01_prepare: `<output.dir>/<exp_name>/prepared/train/`.
#
# **Outputs** `<output.dir>/<exp_name>/fold<k>/`: `model.pt` (plain state_dict) and `config.yaml`
# (the bundle 03_infer loads without Lightning), `metrics.csv` (AP per event x tolerance of the
# best epoch), `oof.parquet` (out-of-fold scores per step), `log/metrics.csv`, `curves.png`,
# `nights.png`, and `checkpoints/` (a killed run started again resumes from `last.ckpt`).
# The best epoch is chosen by the validation score (the competition metric), not by the loss.

# %% tags=["parameters"]
params_file = "params/demo.yaml"
overrides = []

# %%
import polars as pl
from IPython.display import Image

from sleepdetect.config import load_config
from sleepdetect.paths import enter_project_root
from sleepdetect.training import train

enter_project_root()
cfg = load_config(params_file, overrides)
cfg.model

# %%
fold_dir = train(cfg)

# %%
pl.read_csv(fold_dir / "metrics.csv")

# %%
Image(filename=fold_dir / "curves.png")

# %%
Image(filename=fold_dir / "nights.png")
