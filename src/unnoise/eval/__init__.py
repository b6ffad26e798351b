"""Evaluation of trained runs: likelihoods (nll.py)."""
