"""Device files in: raw x, y, z from a wrist device -> the competition's 5-s series (`convert`)."""
