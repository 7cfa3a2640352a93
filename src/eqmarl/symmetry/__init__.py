"""Symmetry: finite permutation groups, their actions on observations and actions, and
the numerical equivariance checks (``testing``)."""
