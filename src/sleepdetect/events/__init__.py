"""Events from per-step scores and their score: post-processing into candidates, the
competition metric, the submission file and the `score` command."""
