"""Does a refactor change training?  The same run before and after, compared cell by cell.

Runs one training command (default: the embedded default config, seed 0, 10 PPO
iterations) in a checkout of ``--before`` (a git revision, checked out into a temporary
worktree) and in this checkout, then compares:

- every ``metrics.csv`` cell except the timing columns (``wall_s``, ``steps_per_s``,
  ``rollout_s``, ``update_s``), as text (the CSV's own formatting, so bit for bit as logged);
- every tensor of the final checkpoint (policy, optimizer state, value normalizer, env
  state, RNG states) with ``torch.equal``, and the non-tensor entries with ``==``
  (``wall_s`` and the stored config excepted).

Prints one JSON document on stdout (the runs' own output goes to files in the work dir).

Usage:
    python benchmarks/refactor_equivalence.py --before 4f5ae05 [--before-run DIR] [--after-run DIR]
        [--out docs/results/refactor_equivalence.json] [overrides ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"wall_s", "steps_per_s", "rollout_s", "update_s"}
DEFAULT_OVERRIDES = ["logger.wandb_mode=disabled", "logger.progress=false", "train.total_env_steps=75000"]
# checkpoint entries that legitimately differ between two runs of the same training
NOT_COMPARED = {"wall_s", "config"}


def run(checkout: Path, run_dir: Path, overrides: list[str], log: Path) -> None:
    """``python launch.py <overrides>`` in ``checkout`` (its own ``src`` first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    cmd = [sys.executable, "launch.py", *overrides, f"hydra.run.dir={run_dir}"]
    with log.open("w") as f:
        subprocess.run(cmd, cwd=checkout, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def compare_metrics(before: list[dict[str, str]], after: list[dict[str, str]]) -> list[str]:
    """The differing cells as ``row/column: before != after`` (empty: identical)."""
    diffs = []
    if len(before) != len(after):
        diffs.append(f"rows: {len(before)} != {len(after)}")
    for i, (b, a) in enumerate(zip(before, after)):
        for key in sorted(set(b) | set(a)):
            if key in TIMING:
                continue
            if b.get(key) != a.get(key):
                diffs.append(f"row {i + 1}/{key}: {b.get(key)!r} != {a.get(key)!r}")
    return diffs


def final_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = max((run_dir / "checkpoints").glob("ckpt_*.pt"))
    return torch.load(path, map_location="cpu", weights_only=False)


def compare_states(before: Any, after: Any, path: str, out: dict[str, Any]) -> None:
    """Walk two checkpoint trees; record leaves compared, max |diff| of tensors, mismatches."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            if path == "" and key in NOT_COMPARED:
                continue
            if key not in before or key not in after:
                out["mismatches"].append(f"{path}/{key}: only in {'after' if key in after else 'before'}")
                continue
            compare_states(before[key], after[key], f"{path}/{key}", out)
    elif isinstance(before, list | tuple) and isinstance(after, list | tuple) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after)):
            compare_states(b, a, f"{path}/{i}", out)
    elif isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor):
        out["tensors"] += 1
        if before.shape != after.shape or before.dtype != after.dtype or not torch.equal(before, after):
            out["mismatches"].append(f"{path}: tensors differ")
            if before.shape == after.shape and before.is_floating_point():
                out["max_abs_diff"] = max(out["max_abs_diff"], float((before - after).abs().max()))
    else:
        out["values"] += 1
        same = bool((before == after).all()) if hasattr(before, "all") else before == after
        if not same:
            out["mismatches"].append(f"{path}: {before!r} != {after!r}"[:200])


def main() -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="git revision of the code before the refactor")
    p.add_argument("--before-run", type=Path, help="reuse this run dir of --before instead of training again")
    p.add_argument("--after-run", type=Path, help="reuse this run dir of this checkout instead of training again")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("overrides", nargs="*", default=DEFAULT_OVERRIDES)
    args = p.parse_args()
    after_rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="eqmarl_equiv_"))
    before_run, after_run = args.before_run, args.after_run
    if before_run is None:
        checkout = work / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(checkout), args.before], cwd=ROOT, check=True)
        try:
            before_run = work / "run_before"
            run(checkout, before_run, args.overrides, work / "before.log")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False)
    if after_run is None:
        after_run = work / "run_after"
        run(ROOT, after_run, args.overrides, work / "after.log")
    metric_diffs = compare_metrics(read_metrics(before_run), read_metrics(after_run))
    states: dict[str, Any] = {"tensors": 0, "values": 0, "max_abs_diff": 0.0, "mismatches": []}
    compare_states(final_checkpoint(before_run), final_checkpoint(after_run), "", states)
    last_b, last_a = read_metrics(before_run)[-1], read_metrics(after_run)[-1]
    result = {
        "what": "one training run before and after a refactor, metrics.csv cells (timings excepted) and the "
        "final checkpoint compared bit for bit, CPU",
        "command": "python launch.py " + " ".join(args.overrides),
        "before": {
            "rev": args.before,
            "final_eval_return": last_b.get("eval_return"),
            "rows": len(read_metrics(before_run)),
        },
        "after": {
            "rev": after_rev,
            "final_eval_return": last_a.get("eval_return"),
            "rows": len(read_metrics(after_run)),
        },
        "metrics_columns_compared": sorted(k for k in last_b if k not in TIMING),
        "metrics_rows_identical_except_timings": not metric_diffs,
        "metrics_differences": metric_diffs[:20],
        "checkpoint_tensors_compared": states["tensors"],
        "checkpoint_other_values_compared": states["values"],
        "checkpoint_identical": not states["mismatches"],
        "final_checkpoint_max_abs_param_diff": states["max_abs_diff"],
        "checkpoint_differences": states["mismatches"][:20],
    }
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    return text


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    from eqmarl.core.log import json_main

    json_main(main)
