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
from eqmarl.core import stop
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
    _check_slurm_multirun(cfg.cluster.name, multirun)
    return cfg


def _check_slurm_multirun(cluster: Any, multirun: bool) -> None:
    if cluster == "slurm" and not multirun:
        raise ConfigError(
            "cluster.name",
            "slurm",
            "local without -m (cluster=slurm submits jobs through hydra's submitit launcher, which runs in "
            "multirun mode only): add -m, e.g. python launch.py -m cluster=slurm seed=0",
        )


# ------------------------------------------------------------------ resume=
# checkpoints read before hydra composed the config (resume_group_overrides), by resume= value
_loaded: dict[str, tuple[Any, dict[str, Any]]] = {}
# the overrides resume_group_overrides added to the command line (not the user's)
_added: list[str] = []


def resume_group_overrides(argv: Sequence[str]) -> list[str]:
    """The env group a ``resume=`` composes with, added before hydra composes the config.

    hydra composes the default ``env: mpe`` unless told otherwise, and a saved run of
    another env (lever, hanabi, smax) does not fit its schema; nor would an override of
    one of that env's keys (``env.race=zerg``) compose.  For ``resume=<run>`` without an
    ``env=`` of the user's, this reads the checkpoint's ``env.name`` and returns
    ``["env=schema_<name>"]``; otherwise (or when the checkpoint cannot be read: the run
    then says why) nothing.

    Args:
        argv: the command line after the script (``sys.argv[1:]``).
    """
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from eqmarl.config.env import ENV_SCHEMAS

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # hydra reports a bad command line itself
            args, _ = get_args_parser().parse_known_args(list(argv))
            parsed = OverridesParser.create().parse_overrides(list(args.overrides or []))
    except (Exception, SystemExit):
        return []
    target = None
    for o in parsed:
        if o.package:
            continue
        if o.key_or_group == "env":  # the user's own choice (a different env is refused with the reason)
            return []
        if o.key_or_group == "resume" and not o.is_delete() and not o.is_sweep_override():
            target = o.value()
    if target is None or not str(target).strip():
        return []
    try:
        _, state = _load_resume(str(target))
        name = state["config"]["env"]["name"]
    except Exception:  # not a checkpoint: the run refuses it with the reason
        return []
    added = [f"env=schema_{name}"] if name in ENV_SCHEMAS else []
    _added.extend(added)
    return added


def _load_resume(target: str) -> tuple[Any, dict[str, Any]]:
    """``load_resume_checkpoint(target)``, read once per process."""
    from eqmarl.train.resume import load_resume_checkpoint

    if target not in _loaded:
        _loaded[target] = load_resume_checkpoint(target)
    return _loaded[target]


def checked_resume(dict_cfg: Any, overrides: Sequence[str], multirun: bool = True) -> tuple[Config, Any, Any]:
    """The config of ``resume=<run>``: the checkpoint's, plus the command line's resumable overrides.

    Only :data:`eqmarl.train.resume.RESUMABLE_OVERRIDES` may change; any other override
    that differs from the saved value is refused with the key, both values and why.  The
    saved config is read on its own schema (not on the groups hydra composed), so a run
    of any env resumes from ``python launch.py resume=<run dir>`` alone.

    Args:
        dict_cfg: hydra's composed config (its ``resume`` is set).
        overrides: hydra's task overrides (the command line's).
        multirun: launched with ``-m``.

    Returns:
        (the validated config, the run directory, the checkpoint file).

    Raises:
        ResumeError: the target is not a checkpoint, or overrides cannot be applied.
        ConfigError: a resumable override has a bad value.
    """
    from omegaconf import OmegaConf

    from eqmarl.train.checkpoint import run_dir_of
    from eqmarl.train.resume import ResumeError, refused_message, refused_overrides, resumable, saved_config_node

    target = str(dict_cfg.resume)
    task = [o for o in overrides if o not in _added]
    check_overrides(dict_cfg, task)
    _check_slurm_multirun(OmegaConf.select(dict_cfg, "cluster.name"), multirun)
    ckpt, state = _load_resume(target)
    _loaded.pop(target, None)  # the run loads it again onto its device; do not keep two copies
    wanted = OmegaConf.to_container(dict_cfg, resolve=True)  # what the command line asks for
    refused = refused_overrides(
        task, {str(k): v for k, v in wanted.items()} if isinstance(wanted, dict) else {}, state["config"]
    )
    if refused:
        raise ResumeError(refused_message(target, refused))
    saved = saved_config_node(state["config"], target)
    for o in task:
        key = o.split("=", 1)[0].lstrip("+~")
        if key != "resume" and resumable(key):
            OmegaConf.update(saved, key, OmegaConf.select(dict_cfg, key), merge=False)
    OmegaConf.update(saved, "resume", target)
    return to_config(saved), run_dir_of(ckpt), ckpt


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
        with stop.exit_on_stop():  # before any run started (composition, a sweep's submission)
            main()
    except KeyboardInterrupt:  # a second Ctrl-C aborted (and said so): no traceback
        sys.exit(130)
    except Exception as e:
        nonfinite = sys.modules.get("eqmarl.train.nonfinite")  # loaded if training ran (no torch import here)
        if nonfinite is not None and isinstance(e, nonfinite.NonFiniteError):
            print(f"eqmarl: {e}", file=sys.stderr, flush=True)  # it says why and what to do
            sys.exit(1)
        if not is_bad_input(e):
            raise
        exit_bad_input(e)
    sig = stop.requested()
    if sig is not None:  # it arrived after the (last) run had finished: it is complete, but say so
        print(f"eqmarl: {stop.signal_name(sig)} arrived after the run finished; it is complete", file=sys.stderr)
        sys.exit(128 + sig)


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
        stop.check()  # a signal while checking a long sweep: nothing was started yet
        try:
            cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
            task_cfg = copy.deepcopy(cfg)
            with read_write(task_cfg), open_dict(task_cfg):
                del task_cfg["hydra"]
            if task_cfg.get("resume") is not None:  # the saved run's config, as the job will use it
                cfgs.append(checked_resume(task_cfg, list(overrides))[0])
            else:
                cfgs.append(checked_config(task_cfg, list(overrides)))  # also rejects keys the schema does not have
        except Exception as e:  # ConfigError, ResumeError, or hydra/omegaconf composition and type errors
            point = " ".join(overrides) or "(no overrides)"
            print(
                f"eqmarl: sweep point #{initial_job_idx + i} [{point}]: {bad_input_message(e)}\n"
                f"eqmarl: nothing was {nothing} ({len(job_overrides)} job(s) in this sweep)",
                file=sys.stderr,
            )
            sys.exit(2)
    return cfgs
