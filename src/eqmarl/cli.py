"""``eqmarl`` console entry: helpers around runs (training itself is ``python launch.py``).

    eqmarl doctor                 what is installed (optional parts, devices)
    eqmarl plot RUN_DIR...        learning curve PNG of each run (metrics.csv)
    eqmarl sync RUN_DIR...        upload offline W&B runs (wraps ``wandb sync``)
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

OPTIONAL = {
    "vmas": "pip install 'eqmarl[mpe]'",
    "mpe2": "pip install 'eqmarl[mpe]'",
    "torch_geometric": "pip install torch-geometric",
    "wandb": "pip install wandb",
    "submitit": "pip install 'eqmarl[cluster]'",
    "hanabi_learning_environment": "CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install 'eqmarl[hanabi]'",
    "jax": "pip install 'eqmarl[smax]'",
    "jaxmarl": "pip install 'eqmarl[smax]'",
    "deepspeed": "DS_BUILD_OPS=0 pip install 'eqmarl[deepspeed]'",
}


def doctor() -> int:
    import torch

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    for mod, how in OPTIONAL.items():
        try:
            m = importlib.import_module(mod)
            print(f"  ok       {mod} {getattr(m, '__version__', '')}")
        except Exception:
            print(f"  missing  {mod}: {how}")
    return 0


def plot(run_dirs: list[str]) -> int:
    from eqmarl.eval.plots import plot_learning_curve

    for d in run_dirs:
        csv = Path(d) / "metrics.csv"
        if not csv.exists():
            print(f"eqmarl plot: {csv} not found", file=sys.stderr)
            return 2
        print(plot_learning_curve(csv, Path(d) / "learning_curve.png", title=Path(d).name))
    return 0


def sync(run_dirs: list[str], extra: list[str]) -> int:
    runs = [str(p) for d in run_dirs for p in sorted(Path(d).rglob("offline-run-*"))]
    if not runs:
        print("eqmarl sync: no offline W&B runs under " + ", ".join(run_dirs), file=sys.stderr)
        return 2
    return subprocess.call(["wandb", "sync", *extra, *runs])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eqmarl", description="eqmarl helpers (train with: python launch.py)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("doctor", help="show what is installed")
    p = sub.add_parser("plot", help="learning curve PNG for run directories")
    p.add_argument("run_dirs", nargs="+")
    s = sub.add_parser("sync", help="upload offline W&B runs found under run directories")
    s.add_argument("run_dirs", nargs="+")
    args, extra = ap.parse_known_args(argv)
    if args.cmd == "doctor":
        return doctor()
    if args.cmd == "plot":
        return plot(args.run_dirs)
    return sync(args.run_dirs, extra)


if __name__ == "__main__":
    sys.exit(main())
