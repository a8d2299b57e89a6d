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
# # 02 train: windows + targets -> model -> bundles -> out-of-fold score -> tuned post-processing
#
# **Requires** the train folder of 01_prepare: `<output.dir>/<exp_name>/prepared/train/`.
#
# **Outputs** for each fold k of `split.fold` (null: every fold) `<output.dir>/<exp_name>/fold<k>/`:
# `model.pt` (plain state_dict) and `config.yaml` (the bundle 03_infer loads without Lightning),
# `metrics.csv` (AP per event x tolerance on the fold's validation data), `oof.parquet`
# (out-of-fold scores per step), `log/metrics.csv`, `curves.png`, `nights.png`, and
# `checkpoints/` (a killed run started again resumes from `last.ckpt`). Then, over all folds,
# `oof.parquet` and `oof_metrics.csv` (the out-of-fold score), and with `tune.enabled` the
# post-processing chosen with nested folds (`tune/`, see `python -m sleepdetect tune --help`).

# %% tags=["parameters"]
params_file = "params/demo.yaml"
overrides = []

# %%
from IPython.display import Image

from sleepdetect.config import load_config
from sleepdetect.core.paths import enter_project_root
from sleepdetect.cv.tune import tune
from sleepdetect.stages.train import fold_picture, oof_metrics, train_folds

enter_project_root()
cfg = load_config(params_file, overrides)
cfg.model

# %%
train_folds(cfg)
oof_metrics(cfg)

# %% [markdown]
# ## How training went
#
# Training loss per step and the validation score (event detection AP) per epoch of the first
# fold (`plots.plot_training_curves`, saved as `fold<k>/curves.png`).

# %%
Image(filename=fold_picture(cfg, "curves.png"))

# %% [markdown]
# Predicted onset and wakeup scores around a few validation nights, with the true events
# (solid) and the top candidates (dotted) (`plots.plot_nights`, saved as `fold<k>/nights.png`).

# %%
Image(filename=fold_picture(cfg, "nights.png"))

# %% [markdown]
# Post-processing chosen on out-of-fold predictions with nested folds (`tune.enabled`).

# %%
if cfg.tune.enabled:
    tune(cfg)
