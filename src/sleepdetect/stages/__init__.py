"""The three notebook stages as thin library calls (01_prepare, 02_train, 03_infer): what
each notebook cell runs, so a cell is one call and the same call works from a script."""
