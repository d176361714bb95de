"""Ensemble stage: blends OOF/test predictions, fits weights and class offsets, writes submission and report."""
