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
