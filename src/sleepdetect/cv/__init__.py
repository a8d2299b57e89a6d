"""Choices made after training, nested over the folds: out-of-fold scores, the tuned
post-processing, and the second-stage rescoring."""
