"""Experiments: comparing runs, model cards, the learning-rate range test and hyperparameter sweeps."""
