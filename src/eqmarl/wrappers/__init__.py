"""Wrappers of policies: EQC (symmetrize any policy over a finite group) and Other-Play
(train against randomly relabelled partners).  They sit above the models they wrap."""
