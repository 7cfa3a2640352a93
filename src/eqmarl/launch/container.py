"""The command that starts each SLURM task's Python inside the project's image (``container=``).

submitit runs every task as ``<python> -u -m submitit.core._submit <folder>`` under
``srun`` (its ``python`` parameter); :func:`python_command` builds that ``<python>``:

- ``none``: the submitting Python (submitit's default).
- ``docker``: ``docker run --rm --init --network host --ipc host -u UID:GID`` with the
  run directories bound at the same paths, the SLURM/submitit variables of *each task*
  passed in (``-e NAME``), ``--gpus all`` on GPU jobs.
- ``apptainer``: ``apptainer exec [--nv] --bind ...`` (the host environment passes
  through; ``--cleanenv``/``--containall`` would drop ``SUBMITIT_EXECUTOR`` and
  ``SLURM_*``, which submitit needs, so they are refused).
- ``charliecloud``: ``ch-run --set-env --no-passwd --bind ... IMAGE --`` (unprivileged;
  the image's own environment from ``/ch/environment``, the host's for everything else;
  the node's ``/etc/passwd`` and ``/etc/group``, so SLURM's user resolves for scontrol).

Inside the image, submitit calls ``scontrol`` (requeue after preemption, node names of
multi-node jobs), so the SLURM client configuration and munge socket
(``container.slurm_binds``) are bound where they exist on the node, and the image
carries Debian's ``slurm-client``.

:func:`check_container` runs before ``sbatch``: the runtime is on PATH and the image
exists (or, with ``container.pull``, can be pulled); otherwise a :class:`ConfigError`
naming ``container.runtime`` or ``container.image``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from eqmarl.config import ConfigError, ContainerConfig
from eqmarl.config.container import RUNTIMES

# the executable each runtime needs on PATH (on the submitting node and the compute nodes)
EXECUTABLES = {"docker": "docker", "apptainer": "apptainer", "charliecloud": "ch-run"}
# options that would break submitit inside the image (its variables would not reach the job)
APPTAINER_REFUSED = ("--cleanenv", "-e", "--containall", "-C")


def _binds(cfg: ContainerConfig, paths: Sequence[str | Path]) -> list[str]:
    """``SRC:DST`` binds: the job's own directories at the same path, then container.binds.

    ``container.slurm_binds`` are added only where they exist (checked on the node, at run
    time, by the shell wrapper), so they are returned separately by :func:`_slurm_binds`.
    """
    out: list[str] = []
    for p in paths:
        s = str(Path(p).absolute())
        if s not in out:
            out.append(s)
    for b in cfg.binds:
        if b not in out:
            out.append(b)
    return [b if ":" in b else f"{b}:{b}" for b in out]


def _uses_gpus(cfg: ContainerConfig, gpus_per_node: int) -> bool:
    return cfg.gpus == "always" or (cfg.gpus == "auto" and gpus_per_node > 0)


def _wrap(script: str) -> str:
    """A command for srun that runs ``script`` in bash *in each task*, with submitit's arguments as "$@".

    srun starts each task itself, so task-specific variables (``SLURM_PROCID``,
    ``SLURM_LOCALID``) only exist there, not in the batch script that holds this line.
    """
    return f"/bin/bash -c {shlex.quote(script)} eqmarl-container"


def _slurm_bind_loop(flag: str, cfg: ContainerConfig) -> str:
    """Bash that appends ``flag SRC:SRC`` to ``args`` for each container.slurm_binds path present on the node."""
    if not cfg.slurm_binds:
        return ""
    paths = " ".join(shlex.quote(p) for p in cfg.slurm_binds)
    return f'for p in {paths}; do [ -e "$p" ] && args+=({flag} "$p:$p"); done; '


def python_command(cfg: ContainerConfig, binds: Sequence[str | Path], gpus_per_node: int = 0) -> str | None:
    """The ``python`` command submitit puts in the sbatch script (None: the submitting Python).

    Args:
        cfg: the ``container`` group.
        binds: host directories the job reads and writes (sweep/run directory, submitit
            folder, the project directory holding ``launch.py`` and ``configs/``); bound
            at the same path inside the image.
        gpus_per_node: ``cluster.gpus_per_node``; GPUs are passed through when > 0
            (``container.gpus=auto``).
    """
    if cfg.runtime == "none":
        return None
    assert cfg.image is not None  # validate() requires it
    gpu = _uses_gpus(cfg, gpus_per_node)
    pairs = _binds(cfg, binds)
    opts = " ".join(shlex.quote(o) for o in cfg.options)
    image, py = shlex.quote(cfg.image), shlex.quote(cfg.python)
    if cfg.runtime == "docker":
        prefixes = "|".join(f"{p}*" for p in cfg.env)
        vols = " ".join(f"-v {shlex.quote(b)}" for b in pairs)
        script = (
            "args=(); "
            f'for v in $(compgen -e); do case "$v" in {prefixes}) args+=(-e "$v");; esac; done; '
            + _slurm_bind_loop("-v", cfg)
            + 'exec docker run --rm --init --network host --ipc host -u "$(id -u):$(id -g)" -e HOME=/tmp '
            + ("--gpus all " if gpu else "")
            + f'{vols} -w "$PWD" "${{args[@]}}" {opts} {image} {py} "$@"'
        )
        return _wrap(script)
    if cfg.runtime == "apptainer":
        bind = ",".join(pairs)
        script = (
            "args=(); "
            + _slurm_bind_loop("--bind", cfg)
            + "exec apptainer exec "
            + ("--nv " if gpu else "")
            + f'--bind {shlex.quote(bind)} "${{args[@]}}" {opts} {image} {py} "$@"'
        )
        return _wrap(script)
    if cfg.runtime == "charliecloud":
        bind = " ".join(f"--bind {shlex.quote(b)}" for b in pairs)
        # ch-run needs $USER, which some batch environments lack.  Its own /etc/passwd knows
        # only the caller, but scontrol must resolve SlurmUser: the node's passwd/group instead
        script = (
            'args=(); export USER="${USER:-$(id -un)}"; '
            + 'for p in /etc/passwd /etc/group; do [ -e "$p" ] && args+=(--bind "$p:$p"); done; '
            + _slurm_bind_loop("--bind", cfg)
            + f'exec ch-run --set-env --no-passwd {bind} "${{args[@]}}" {opts} {image} -- {py} "$@"'
        )
        return _wrap(script)
    raise ConfigError("container.runtime", cfg.runtime, ", ".join(RUNTIMES))


def prepare_mount_points(cfg: ContainerConfig, binds: Sequence[str | Path]) -> list[str]:
    """Charliecloud binds need their destination to exist in the image: create the missing ones.

    ``ch-run`` mounts the image read-only and cannot create a bind's destination (docker
    and apptainer can).  For a directory image (``ch-convert IMAGE DIR``) the missing
    directories are made inside it; a SquashFS image cannot be changed, so its missing
    mount points are an error.  Returns the directories created.

    Raises:
        ConfigError: naming ``container.image`` (a SquashFS image without the mount points).
    """
    if cfg.runtime != "charliecloud":
        return []
    root = Path(str(cfg.image))
    wanted = [b.split(":", 1)[1] if ":" in b else b for b in _binds(cfg, binds)]
    missing = [d for d in wanted if not (root / d.lstrip("/")).exists()]
    if missing and not root.is_dir():
        raise ConfigError(
            "container.image",
            cfg.image,
            "a Charliecloud directory image (ch-convert IMAGE DIR), or a SquashFS image that has these mount points: "
            + ", ".join(missing),
        )
    for d in missing:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return missing


# packages whose versions must agree between the submitting Python and the image: submitit
# pickles the job there and unpickles its result here (cloudpickle is not compatible across versions)
PICKLE_PACKAGES = ("cloudpickle", "submitit")


def _versions_here() -> dict[str, str]:
    import importlib

    return {name: str(getattr(importlib.import_module(name), "__version__", "?")) for name in PICKLE_PACKAGES}


def image_exec(cfg: ContainerConfig) -> list[str] | None:
    """A command prefix that runs a program in the image on this node (None: the image is remote)."""
    image = str(cfg.image)
    if cfg.runtime == "docker":
        return ["docker", "run", "--rm", "--entrypoint", "", image]
    if cfg.runtime == "charliecloud":
        return ["ch-run", "--set-env", image, "--"]
    if cfg.runtime == "apptainer" and "://" not in image:
        return ["apptainer", "exec", image]
    return None


def check_pickle_compatible(cfg: ContainerConfig) -> None:
    """The image's cloudpickle/submitit are the submitting Python's (else results cannot be read back).

    Raises:
        ConfigError: naming ``container.image``, with the versions on both sides and the fix.
    """
    prefix = image_exec(cfg)
    if prefix is None:
        return
    code = "import cloudpickle, submitit; print(cloudpickle.__version__, submitit.__version__)"
    env = dict(os.environ, USER=os.environ.get("USER") or "eqmarl")
    p = subprocess.run(
        [*prefix, cfg.python, "-c", code], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    if p.returncode != 0:
        raise ConfigError(
            "container.image",
            cfg.image,
            f"an image whose {cfg.python} imports cloudpickle and "
            f"submitit (container.python; it said: {p.stderr.strip()[-300:]})",
        )
    there = dict(zip(PICKLE_PACKAGES, p.stdout.split(), strict=False))
    here = _versions_here()
    if there != here:
        pins = " ".join(f"{k}=={v}" for k, v in here.items())
        raise ConfigError(
            "container.image",
            cfg.image,
            f"an image with the submitting Python's {', '.join(f'{k} {v}' for k, v in here.items())} (the image has "
            f"{', '.join(f'{k} {v}' for k, v in there.items())}; job pickles cross between them): rebuild with "
            f"--build-arg PIP_PINS='{pins}', or here: pip install " + " ".join(f"{k}=={v}" for k, v in there.items()),
        )


def check_container(cfg: ContainerConfig, run: bool = True) -> None:
    """Before sbatch: the runtime is on PATH, the image is there (or is pulled with container.pull), and
    (``run``) its cloudpickle/submitit match the submitting Python's.

    Args:
        cfg: the ``container`` group.
        run: False skips the checks that run the runtime (``docker image inspect``, pulls).

    Raises:
        ConfigError: naming ``container.runtime`` or ``container.image``.
    """
    if cfg.runtime == "none":
        return
    exe = EXECUTABLES[cfg.runtime]
    if shutil.which(exe) is None:
        raise ConfigError(
            "container.runtime", cfg.runtime, f"a runtime whose command is on PATH ({exe} not found), or none"
        )
    image = str(cfg.image)
    if cfg.runtime == "apptainer":
        bad = [o for o in cfg.options if o.split("=")[0] in APPTAINER_REFUSED]
        if bad:
            raise ConfigError(
                "container.options",
                bad,
                "options that keep the host environment (not --cleanenv/--containall: "
                "submitit needs SUBMITIT_EXECUTOR and SLURM_* inside)",
            )
    if cfg.runtime == "docker":
        if not run:
            return
        p = subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, text=True, timeout=120, check=False
        )
        if p.returncode != 0 and not cfg.pull:
            raise ConfigError(
                "container.image",
                image,
                "an image present in the docker engine (docker images), or container.pull=true to pull it",
            )
        if p.returncode != 0:
            q = subprocess.run(["docker", "pull", image], capture_output=True, text=True, timeout=3600, check=False)
            if q.returncode != 0:
                raise ConfigError(
                    "container.image", image, f"an image docker can pull (docker pull: {q.stderr.strip()[-300:]})"
                )
        check_pickle_compatible(cfg)
        return
    if "://" in image:  # apptainer pulls docker://, oras://, library:// itself (into its cache) when the job starts
        if cfg.runtime == "charliecloud":
            raise ConfigError(
                "container.image",
                image,
                "a Charliecloud image directory or SquashFS file "
                "(make one with: ch-convert IMAGE:TAG /var/tmp/eqmarl.sqfs)",
            )
        return
    if not os.path.exists(image):
        what = "a .sif file" if cfg.runtime == "apptainer" else "an image directory or .sqfs file"
        raise ConfigError(
            "container.image", image, f"{what} that exists (absolute path; the compute nodes must see it)"
        )
    if run:
        check_pickle_compatible(cfg)
