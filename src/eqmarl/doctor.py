"""``eqmarl doctor``: what this installation (or image) can run; the image's self-check.

    eqmarl doctor                      readable report
    eqmarl doctor --json               the same as one JSON object
    eqmarl doctor --require sc2,gpu    exit 1 naming what is missing

Each check is a :class:`Check` (ok, detail, fix).  ``--require`` names are the keys of
:data:`REQUIREMENTS`.  Nothing here imports more than it checks, and a broken optional
package shows up as "missing" with how to install it, never as a traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eqmarl.core.files import write_stdout
from eqmarl.core.log import stdout_to_stderr

SC2_BASE = "Base75689"  # StarCraft II 4.10
SC2_VERSIONS = {"Base75689": "4.10", "Base69232": "4.6.2", "Base60321": "4.1.2"}
SC2_MAP = "32x32_flat.SC2Map"


@dataclass
class Check:
    """One line of the report."""

    ok: bool
    detail: str = ""
    # what to do when not ok
    fix: str = ""


def _module(name: str, fix: str) -> Check:
    try:
        m = importlib.import_module(name)
    except Exception as e:  # ImportError, or a package that fails on import (protobuf, CUDA libs)
        return Check(False, f"{type(e).__name__}: {str(e)[:160]}", fix)
    return Check(True, str(getattr(m, "__version__", "") or ""))


def sc2_path() -> Path:
    """Where pysc2 looks for StarCraft II: $SC2PATH, else ~/StarCraftII."""
    return Path(os.environ.get("SC2PATH") or Path.home() / "StarCraftII").expanduser()


def check_sc2() -> Check:
    root = sc2_path()
    fix = f"eqmarl install-sc2 --accept-license --dest {root}, or the image built with SC2_ACCEPT_LICENSE=yes"
    if (root / "NOT_INSTALLED").exists():
        return Check(False, f"{root}: {(root / 'NOT_INSTALLED').read_text().strip()}", fix)
    versions = sorted(p.name for p in (root / "Versions").glob("Base*")) if (root / "Versions").is_dir() else []
    if not versions:
        return Check(False, f"no StarCraft II at SC2PATH={root} (no Versions/Base*)", fix)
    exe = root / "Versions" / SC2_BASE / "SC2_x64"
    names = ", ".join(f"{v} ({SC2_VERSIONS.get(v, '?')})" for v in versions)
    if not exe.is_file():
        return Check(False, f"{root}: {names}; SMACv2 results need 4.10 ({SC2_BASE})", fix)
    if not os.access(exe, os.X_OK):
        return Check(False, f"{exe} is not executable", f"chmod a+rx {exe}")
    return Check(True, f"4.10 ({SC2_BASE}) at {root}")


def check_maps() -> Check:
    m = sc2_path() / "Maps" / "SMAC_Maps"
    if (m / SC2_MAP).is_file():
        return Check(True, f"{len(list(m.glob('*.SC2Map')))} maps in {m}")
    return Check(False, f"{m / SC2_MAP} missing", "eqmarl install-sc2 --accept-license (installs the SMACv2 maps)")


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def check_sc2_starts(timeout_s: float = 90.0) -> Check:
    """Start the StarCraft II binary headless and wait until its API port accepts a connection."""
    exe = sc2_path() / "Versions" / SC2_BASE / "SC2_x64"
    if not exe.is_file():
        return Check(False, "no StarCraft II binary", "see sc2")
    if not _is_elf(exe):
        return Check(False, f"{exe} is not an ELF binary (a stand-in?); not started", "a real StarCraft II 4.10")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = sc2_path()
    env = dict(os.environ, LD_LIBRARY_PATH=f"{os.environ.get('LD_LIBRARY_PATH', '')}:{root / 'Libs'}")
    with tempfile.TemporaryDirectory(prefix="sc-") as tmp:
        cmd = [
            str(exe),
            "-listen",
            "127.0.0.1",
            "-port",
            str(port),
            "-dataDir",
            f"{root}/",
            "-tempDir",
            f"{tmp}/",
            "-headlessNoRender",
        ]
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=exe.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while time.time() - t0 < timeout_s:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
                    return Check(
                        False, f"SC2_x64 exited with {proc.returncode}: {err}", "see docs/cluster.md: StarCraft II"
                    )
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return Check(True, f"answered on port {port} after {time.time() - t0:.1f} s")
                except OSError:
                    time.sleep(0.5)
            return Check(False, f"no answer on port {port} within {timeout_s:.0f} s", "check TMPDIR and memory")
        finally:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()


def check_gpu() -> Check:
    import torch

    if not torch.cuda.is_available():
        return Check(
            False,
            f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda})",
            "a GPU node; docker --gpus all / apptainer --nv (container.gpus)",
        )
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return Check(True, f"{len(names)} x {', '.join(sorted(set(names)))} (CUDA {torch.version.cuda})")


def check_nccl() -> Check:
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_nccl_available():
        return Check(False, "torch.distributed has no NCCL backend", "a CUDA build of torch")
    if not torch.cuda.is_available():
        return Check(False, "NCCL built in, but no CUDA device", "a GPU node")
    return Check(True, "NCCL " + ".".join(map(str, torch.cuda.nccl.version())))


def check_jax() -> Check:
    c = _module("jax", "pip install 'eqmarl[smax]'")
    if not c.ok:
        return c
    import jax

    return Check(True, f"jax {jax.__version__}, platform {jax.default_backend()}, {len(jax.devices())} device(s)")


def check_hanabi() -> Check:
    fix = "CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install 'eqmarl[hanabi]'"
    try:
        from hanabi_learning_environment import rl_env

        env = rl_env.make("Hanabi-Full", num_players=2)
        env.reset()
    except Exception as e:
        return Check(False, f"{type(e).__name__}: {str(e)[:160]}", fix)
    return Check(True, "engine loaded (Hanabi-Full, 2 players)")


def check_wandb() -> Check:
    c = _module("wandb", "pip install wandb")
    mode = os.environ.get("WANDB_MODE", "unset: eqmarl logs offline unless logger.wandb_mode=online")
    key = "set" if os.environ.get("WANDB_API_KEY") else "not set"
    return Check(c.ok, f"wandb {c.detail}; WANDB_MODE {mode}; WANDB_API_KEY {key}", c.fix)


def check_slurm() -> Check:
    exe = shutil.which("scontrol")
    if exe is None:
        return Check(False, "scontrol not on PATH", "Debian: apt-get install slurm-client (the image has it)")
    return Check(True, exe)


CHECKS: dict[str, Callable[[], Check]] = {
    "sc2": check_sc2,
    "maps": check_maps,
    "sc2_starts": check_sc2_starts,
    "pysc2": lambda: _module("pysc2", "pip install pysc2 (the image build with SMACV2_SPEC)"),
    "smacv2": lambda: _module("smacv2", "pip install git+https://github.com/oxwhirl/smacv2.git (not on PyPI)"),
    "gpu": check_gpu,
    "nccl": check_nccl,
    "jax": check_jax,
    "jaxmarl": lambda: _module("jaxmarl", "pip install 'eqmarl[smax]'"),
    "hanabi": check_hanabi,
    "mpe": lambda: _module("vmas", "pip install 'eqmarl[mpe]'"),
    "mpe2": lambda: _module("mpe2", "pip install 'eqmarl[mpe]'"),
    "torch_geometric": lambda: _module("torch_geometric", "pip install torch-geometric"),
    "submitit": lambda: _module("submitit", "pip install 'eqmarl[cluster]'"),
    "deepspeed": lambda: _module("deepspeed", "DS_BUILD_OPS=0 pip install 'eqmarl[deepspeed]'"),
    "wandb": check_wandb,
    "slurm": check_slurm,
}
REQUIREMENTS = tuple(CHECKS)


def run_checks(names: Sequence[str] | None = None) -> dict[str, Check]:
    """Run the named checks (all by default); ``sc2_starts`` only runs when ``sc2`` passed."""
    out: dict[str, Check] = {}
    with stdout_to_stderr():  # packages that print on import must not spoil --json
        for name in names or CHECKS:
            _run_one(name, out)
    return out


def _run_one(name: str, out: dict[str, Check]) -> None:
    if name == "sc2_starts" and not (out.get("sc2") or check_sc2()).ok:
        out[name] = Check(False, "skipped: no StarCraft II 4.10", "see sc2")
        return
    try:
        out[name] = CHECKS[name]()
    except Exception as e:  # a check must never crash the report
        out[name] = Check(False, f"check failed: {type(e).__name__}: {str(e)[:160]}")


def report(checks: dict[str, Check]) -> dict:
    import torch

    import eqmarl

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "eqmarl": getattr(eqmarl, "__version__", ""),
        "in_container": os.path.exists("/.dockerenv")
        or "APPTAINER_CONTAINER" in os.environ
        or os.path.exists("/ch/environment"),
        "checks": {k: asdict(v) for k, v in checks.items()},
    }


def main(as_json: bool = False, require: str = "") -> int:
    """``eqmarl doctor``: print the report; 1 when a ``--require`` name is missing, 2 when unknown.

    Raises:
        OutputWriteError: stdout refused the report (``eqmarl`` prints one line and exits 1).
    """
    wanted = [r.strip() for r in require.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in CHECKS]
    if unknown:
        print(f"eqmarl doctor: --require {','.join(unknown)}; allowed: {', '.join(REQUIREMENTS)}", file=sys.stderr)
        return 2
    with stdout_to_stderr() as stdout:  # dependencies that print at import must not spoil --json
        rep = report(run_checks())
        failed = [r for r in wanted if not rep["checks"][r]["ok"]]
        rep["required"] = wanted
        rep["missing"] = failed
        if as_json:
            text = json.dumps(rep, indent=2)
        else:
            lines = [
                f"eqmarl {rep['eqmarl']}, python {rep['python']}, torch {rep['torch']}"
                + (" (in a container)" if rep["in_container"] else "")
            ]
            for name, c in rep["checks"].items():
                line = f"  {'ok     ' if c['ok'] else 'missing'}  {name:16s} {c['detail']}"
                lines.append(line + (f"\n           fix: {c['fix']}" if not c["ok"] and c["fix"] else ""))
            text = "\n".join(lines)
        write_stdout(text, stdout)  # a full disk or closed pipe behind stdout: OutputWriteError
    if failed:
        print(f"eqmarl doctor: required but missing: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
