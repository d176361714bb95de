"""The competition layout read into tables: train.csv and its photo folders (one row per photo, label fixes
applied), eval/info.csv, and the rules a table's folds must keep."""
