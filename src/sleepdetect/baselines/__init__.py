"""Heuristics that find sleep without training (HDCZA), registered by name beside the
models and run by 03_infer with `infer.baseline`."""
