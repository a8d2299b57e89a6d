"""Feature extractors: (batch, in_channels, steps) -> image (batch, out_chans, height, frames).

Every module here is imported, so a class registered with `FEATURE_EXTRACTORS` in a new file
is available by name at once.
"""

from sleepdetect.models.registries import import_all

import_all(__name__, __path__)
