"""Plumbing every layer may use and that knows nothing of sleep: constants, errors, name
registries, atomic files, fingerprints, locks, input paths, progress bars."""
