"""eqmarl: symmetry-aware multi-agent PPO, from a laptop to a SLURM cluster."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# OpenMP (torch's CPU thread pool) reads OMP_WAIT_POLICY once, when torch loads it.
# PASSIVE lets idle threads sleep instead of spinning: with it, torch's threads use every
# core without collapsing when another process shares the cores
# (docs/results/threads_contention.json); without it, train.threads=0 falls back to one
# thread (eqmarl.train.threads).  Set only where torch is not loaded yet and the user set
# nothing; a user's own value always wins.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
