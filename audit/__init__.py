"""Label audit: the training labels a finished run's out-of-fold predictions find probably wrong."""
