"""eqmarl: symmetry-aware multi-agent PPO, from a laptop to a SLURM cluster."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# OpenMP (torch's CPU thread pool) reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when
# torch loads it.  PASSIVE lets idle threads sleep instead of spinning for milliseconds:
# with it, torch's threads use every core without collapsing when another process shares
# the cores (docs/results/threads_contention.json); without it, train.threads=0 falls back
# to one thread (eqmarl.train.threads).  A pure PASSIVE policy (spin count 0) puts a
# thread to sleep after every operator, and waking it again costs more than the small
# operators of a PPO update take (two threads ran the MPE default at 0.7x one thread's
# speed); a short spin first (GOMP_SPINCOUNT, GNU OpenMP's, which torch's pip wheels use:
# about 10 us) keeps the threads awake between back-to-back operators; while another
# process keeps a core busy, train.threads=0 trains on the free cores only
# (eqmarl.train.threads.AdaptiveThreads), where a spin cannot stall a barrier.  Set only
# where torch is not loaded yet and the user set no policy; a user's own values always win.
OMP_SPIN_COUNT = "1000"
if "torch" not in _sys.modules and "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    _os.environ.setdefault("GOMP_SPINCOUNT", OMP_SPIN_COUNT)
