"""sleepdetect: find sleep onset and wakeup in wrist accelerometer recordings."""

__version__ = "0.1.0"
