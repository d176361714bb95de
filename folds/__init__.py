"""Folds stage: the contract table plus a `fold` column, written to <run_dir>/folds.csv."""
