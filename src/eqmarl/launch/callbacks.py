"""hydra callbacks (``hydra.callbacks`` in configs/config.yaml).

:class:`RunDirCheck` checks the run directory before hydra creates it and writes its own
files there: a directory that cannot be written, or (for a fresh run) one that already
holds another run, stops the launch with exit code 2 and a message, leaving that
directory untouched.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from eqmarl.train.rundir import RunDirError, check_fresh_run_dir, check_writable


class RunDirCheck(Callback):
    """Refuse an unwritable or already used ``hydra.run.dir`` (and an unwritable ``hydra.sweep.dir``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = str(config.hydra.run.dir)  # resolved once: hydra's ${now:} is cached per config
        try:
            if not OmegaConf.select(config, "resume"):  # a resume continues in its checkpoint's dir
                check_fresh_run_dir(run_dir)
            check_writable(run_dir, "hydra.run.dir")
        except RunDirError as e:
            print(f"eqmarl: {e}", file=sys.stderr)
            sys.exit(2)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_writable(str(config.hydra.sweep.dir), "hydra.sweep.dir")
        except RunDirError as e:
            print(f"eqmarl: {e}", file=sys.stderr)
            sys.exit(2)
