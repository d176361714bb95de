"""Pseudo-label stage: eval photos that another run's ensemble is sure of, as train-only photos of this run."""
