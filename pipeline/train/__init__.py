"""Training: one (backbone, fold) pair, and the local and Ray job runners that train every pair of a run."""
