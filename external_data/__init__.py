"""External-data stage: older faces from outside sets, with masks put on them, as train-only pseudo-persons."""
