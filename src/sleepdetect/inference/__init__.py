"""Inference: bundles loaded back and run over whole series with plain torch (no Lightning),
so the Kaggle kernel and every reader of scores share one way to predict."""
