"""Symmetry: finite permutation groups and the EQC symmetrizer."""
