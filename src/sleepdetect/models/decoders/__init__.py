"""Decoders: sequence features (batch, n_channels, frames) -> logits (batch, frames, n_classes).

Every module here is imported, so a class registered with `DECODERS` in a new file is
available by name at once.
"""

from sleepdetect.models.registries import import_all

import_all(__name__, __path__)
