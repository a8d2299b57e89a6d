"""Overrides that make params/demo.yaml run its three notebooks in seconds (tests only)."""

TINY_DEMO = [
    "data.synthetic.series=4",
    "data.synthetic.days=2",
    "model.params={hidden_size: 8, num_layers: 1}",
    "windows.length=2880",
    "windows.valid_stride=1440",
    "windows.per_epoch=16",
    "trainer.max_epochs=1",
    "trainer.batch_size=8",
]

# TINY_DEMO with kill points to aim at (tests/test_kill.py): two folds trained in turn, two
# epochs of two steps each with a checkpoint after every step (resumes mid-epoch and at an
# epoch's end), then tune on the out-of-fold scores, whose choice 03_infer uses.
KILL_DEMO = [
    *TINY_DEMO,
    "split.n_folds=2",
    "split.fold=null",
    "trainer.max_epochs=2",
    "trainer.checkpoint_every_n_steps=1",
    "tune.enabled=true",
    "tune.bootstrap=50",
    "infer.tuned=true",
]
