"""The checks ``launch.py`` makes before anything runs, and the one exit code for bad input.

Every bad input (a value :func:`eqmarl.config.validate` refuses, an option an env refuses
when it is built, an override hydra cannot parse, an unknown group option, a deleted
group, a bad point of a sweep) ends with one line on stderr naming the key and exit code
2, before any training or submission.  eqmarl's own refusals are one class,
:class:`~eqmarl.core.errors.InvalidOption` (``ConfigError`` is the same class), with the
key, the value and what is allowed.  A crash during training is not bad input and keeps
its traceback (exit code 1).

:func:`checked_config` is the path of one run (also used, in process, by the config fuzz
test); :func:`validate_sweep` checks every point of a ``-m`` sweep first, for the local
launcher and the SLURM launcher alike (``hydra_plugins.eqmarl_launcher``).
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from eqmarl.config import Config, ConfigError, check_overrides, to_config
from eqmarl.core.errors import InvalidOption

# hydra's own messages end with this advice, which does not apply to eqmarl's bad input
_HYDRA_TAIL = ("Config search path", "Set the environment variable HYDRA_FULL_ERROR", "See https://hydra.cc")


def checked_config(dict_cfg: Any, overrides: Sequence[str], multirun: bool = True) -> Config:
    """The typed, validated config of one run; raises :class:`ConfigError` naming the key.

    ``multirun``: launched with ``-m`` (``cluster=slurm`` needs it: submitit's launcher
    runs in multirun mode only).
    """
    check_overrides(dict_cfg, overrides)
    cfg = to_config(dict_cfg)
    if cfg.cluster.name == "slurm" and not multirun:
        raise ConfigError(
            "cluster.name",
            "slurm",
            "local without -m (cluster=slurm submits jobs through hydra's submitit launcher, which runs in "
            "multirun mode only): add -m, e.g. python launch.py -m cluster=slurm seed=0",
        )
    return cfg


def is_bad_input(e: BaseException) -> bool:
    """True for errors of the command line or config (exit 2), not of training."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(e, (InvalidOption, HydraException, OmegaConfBaseException))


def bad_input_message(e: BaseException) -> str:
    """One line for a bad-input error: eqmarl's message, or hydra's/omegaconf's condensed."""
    from hydra.errors import OverrideParseException

    if isinstance(e, InvalidOption):  # its message: "invalid config: key=value; allowed: ..."
        return str(e)
    parts = [str(e)]
    if isinstance(e, OverrideParseException):  # name the override (and so the key) first
        parts = [
            f"cannot parse the override {e.override!r} (override grammar: key=value; non-ASCII text must be "
            f"quoted, e.g. key='text'):",
            str(e).splitlines()[0],
        ]
    if e.__cause__ is not None and str(e.__cause__) not in parts[0]:
        parts.append(str(e.__cause__))
    lines: list[str] = []
    for raw in "\n".join(parts).splitlines():
        line = raw.strip()
        if line.startswith(_HYDRA_TAIL):
            break
        if line and not line.startswith(("object_type=", "reference_type=", "schema", "^")):
            lines.append(line)
    text, listing = "", False
    for line in lines:  # "Available options in 'env':" + one option per line -> one line
        if not text:
            text = line
        elif text.endswith(":"):
            text, listing = f"{text} {line}", True
        elif listing and " " not in line:
            text += f", {line}"
        else:
            text, listing = f"{text}; {line}", False
    return text.strip() or type(e).__name__


def exit_bad_input(e: BaseException, extra: str = "") -> None:
    """Print the one-line message (and ``extra``) and exit 2."""
    print(f"eqmarl: {bad_input_message(e)}{extra}", file=sys.stderr, flush=True)
    sys.exit(2)


def run_main(main: Callable[[], Any]) -> None:
    """Run launch.py's ``@hydra.main`` function with eqmarl's exit codes.

    hydra reports its own errors (override syntax, an unknown group option, a missing
    group) with exit code 1; here they become one line and exit code 2, like eqmarl's.
    A run stopped for non-finite updates prints its message and exits 1; other
    exceptions propagate (a traceback, exit code 1).
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"  # hydra raises instead of printing and exiting 1
    try:
        main()
    except Exception as e:
        nonfinite = sys.modules.get("eqmarl.train.nonfinite")  # loaded if training ran (no torch import here)
        if nonfinite is not None and isinstance(e, nonfinite.NonFiniteError):
            print(f"eqmarl: {e}", file=sys.stderr, flush=True)  # it says why and what to do
            sys.exit(1)
        if not is_bad_input(e):
            raise
        exit_bad_input(e)


def validate_sweep(
    hydra_context: Any, config: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int, nothing: str
) -> list[Config]:
    """Compose and validate every point of a sweep; on the first bad one print why and exit 2.

    Args:
        hydra_context, config: the launcher's (``config_loader.load_sweep_config`` composes a point).
        job_overrides: each point's overrides.
        initial_job_idx: the number of the first point.
        nothing: what did not happen, for the message (``submitted``, ``run``).
    """
    from omegaconf import open_dict, read_write

    cfgs = []
    for i, overrides in enumerate(job_overrides):
        try:
            cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
            task_cfg = copy.deepcopy(cfg)
            with read_write(task_cfg), open_dict(task_cfg):
                del task_cfg["hydra"]
            cfgs.append(checked_config(task_cfg, list(overrides)))  # also rejects keys the schema does not have
        except Exception as e:  # ConfigError, or hydra/omegaconf composition and type errors
            point = " ".join(overrides) or "(no overrides)"
            print(
                f"eqmarl: sweep point #{initial_job_idx + i} [{point}]: {bad_input_message(e)}\n"
                f"eqmarl: nothing was {nothing} ({len(job_overrides)} job(s) in this sweep)",
                file=sys.stderr,
            )
            sys.exit(2)
    return cfgs
