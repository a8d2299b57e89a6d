"""Data in: the competition files read and checked, synthetic series, features, the prepared
folder (01_prepare), and training windows with their targets."""
