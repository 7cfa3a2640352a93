"""hydra callbacks (``hydra.callbacks`` in configs/config.yaml).

:class:`RunDirCheck` checks the run directory before hydra creates it and writes its own
files there: a directory that cannot be written, or (for a fresh run) one that already
holds another run or that another launch holds, stops the launch with exit code 2 and a
message, leaving that directory untouched.  For a fresh run it takes the run dir's lock
at that moment (:func:`eqmarl.train.rundir.claim_run_dir`: the check and the lock in one
step), and from then on a SIGINT/SIGTERM stops the launch at the next safe point
(:func:`eqmarl.core.stop.defer`) instead of at once.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from eqmarl.core import stop
from eqmarl.train.rundir import (
    RunDirError,
    check_fresh_run_dir,
    check_writable,
    claim_run_dir,
    note_new_dirs,
    own_slurm_requeue,
)


class RunDirCheck(Callback):
    """Refuse an unwritable or already used ``hydra.run.dir`` (and an unwritable ``hydra.sweep.dir``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        stop.defer()  # the run dir is about to exist: a signal now stops where nothing is half-written
        run_dir = str(config.hydra.run.dir)  # resolved once: hydra's ${now:} is cached per config
        note_new_dirs(run_dir)  # a launch that trains nothing removes what it created
        try:
            if OmegaConf.select(config, "resume"):  # a resume continues in its checkpoint's dir
                check_writable(run_dir, "hydra.run.dir")
                return
            requeue = own_slurm_requeue(run_dir)  # a requeued SLURM job continues in its own run dir
            if not requeue:
                check_fresh_run_dir(run_dir)  # the usual refusal, before anything is created
            check_writable(run_dir, "hydra.run.dir")
            claim_run_dir(run_dir, fresh=not requeue)  # checked again, under the lock
        except RunDirError as e:
            print(f"eqmarl: {e}", file=sys.stderr)
            sys.exit(2)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "cluster.name") == "local":  # its jobs run here, one after another
            stop.defer()
        try:
            check_writable(str(config.hydra.sweep.dir), "hydra.sweep.dir")
        except RunDirError as e:
            print(f"eqmarl: {e}", file=sys.stderr)
            sys.exit(2)
