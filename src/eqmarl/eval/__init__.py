"""Evaluation helpers: learning curves and plots."""
