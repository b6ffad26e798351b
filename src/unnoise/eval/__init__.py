"""Evaluation of trained runs: likelihoods (nll.py) and sample-quality metrics on features (metrics.py)."""
