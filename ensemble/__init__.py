"""Ensemble stage: blends the OOF/test predictions of one run or of several (votes, weights, selection, stacking, judged by their nested figures), writes the submission and report, compares runs."""
