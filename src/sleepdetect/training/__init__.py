"""Training with Lightning, one fold model at a time (the only package that imports
lightning): data, augmentations, the LightningModule, the trainer, and the fold's bundle."""
