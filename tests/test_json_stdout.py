"""What eqmarl documents as machine-readable is exactly one JSON document on stdout,
whatever the installed dependencies print at import (jaxmarl prints two lines on its
first import, DeepSpeed logs its accelerator choice to the stdout it sees at import).

``eqmarl eval`` on an SMAX run is checked in tests/test_smax.py's end-to-end test (it
reuses that test's training run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, launch_cmd, run_ok

CLI = [sys.executable, "-m", "eqmarl.cli"]


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_stdout_to_stderr_moves_every_writer(tmp_path: Path) -> None:
    """Python prints, raw writes to fd 1 and child processes inside the block reach stderr;
    the yielded stream and everything after the block reach stdout."""
    code = (
        "import os, subprocess, sys\n"
        "from eqmarl.core.log import stdout_to_stderr\n"
        "print('before')\n"
        "with stdout_to_stderr() as out:\n"
        "    print('python print')\n"
        "    os.write(1, b'raw fd write\\n')\n"
        "    subprocess.run([sys.executable, '-c', 'print(\"child process\")'], check=True)\n"
        "    print('the document', file=out)\n"
        "print('after')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert p.stdout.split() == ["before", "the", "document", "after"]
    for text in ("python print", "raw fd write", "child process"):
        assert text in p.stderr and text not in p.stdout


@pytest.mark.skipif(not (_installed("jaxmarl") and _installed("deepspeed")), reason="needs jaxmarl and deepspeed")
def test_doctor_json_is_only_json(clean_env: dict) -> None:
    p = run_ok([*CLI, "doctor", "--json"], clean_env, timeout=600)
    report = json.loads(p.stdout)  # the whole of stdout
    assert report["checks"]["jax"]["ok"] and report["checks"]["deepspeed"]["ok"], report["checks"]
    assert "Importing submoduled environments" in p.stderr  # the chatter went to stderr, not away


@pytest.mark.skipif(not _installed("deepspeed"), reason="needs deepspeed")
def test_benchmark_json_line_with_deepspeed(clean_env: dict) -> None:
    """A benchmark that imports DeepSpeed (zero_memory) prints only its JSON on stdout."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "zero_memory.py"), "--agents", "4", "--hidden", "8"]
    cmd += ["--stages", "0", "--ranks", "1"]
    p = run_ok(cmd, clean_env, timeout=900)
    json.loads(p.stdout)


# cheap benchmarks at tiny settings (a few seconds each): (script, arguments, a key of the document)
TINY_BENCHMARKS = [
    (
        "layer_throughput.py",
        ["--models", "gnn", "--widths", "8", "--nodes", "4", "--pyg-max-nodes", "0", "--target-s", "0.01"],
        "results",
    ),
    (
        "hanabi_throughput.py",
        ["--envs", "8", "--engine-envs", "2", "--steps", "3", "--engine-steps", "2"],
        "fast",
    ),
    # a parent that reads each point's JSON from a child process's stdout
    (
        "agent_scaling.py",
        ["--agents", "2", "--graphs", "0", "--ckpt", "0", "model.hidden=8", "model.layers=1", "train.threads=1"],
        "points",
    ),
    (
        "update_precision.py",
        ["--repeats", "1", "train.num_envs=4", "algo.rollout_steps=5", "model.hidden=8", "train.threads=1"],
        "speedup_bf16",
    ),
]


@pytest.mark.parametrize(("script", "args", "key"), TINY_BENCHMARKS, ids=[b[0] for b in TINY_BENCHMARKS])
def test_benchmarks_print_one_json_document(script: str, args: list[str], key: str, clean_env: dict) -> None:
    """Every benchmark's stdout is exactly one JSON document; progress rows go to stderr."""
    p = run_ok([sys.executable, str(ROOT / "benchmarks" / script), *args], clean_env, timeout=120)
    doc = json.loads(p.stdout)  # the whole of stdout
    assert key in doc, sorted(doc)
    if script == "agent_scaling.py":
        assert "status" not in doc["points"][0], doc["points"][0]  # the child's point parsed
        assert '"agents": 2' in p.stderr  # the per-point row went to stderr


def test_eval_and_plot_curves_print_only_json(tmp_path: Path, clean_env: dict) -> None:
    run = tmp_path / "run"
    run_ok(launch_cmd(*TINY, "train.total_env_steps=200", f"hydra.run.dir={run}"), clean_env, timeout=600)
    p = run_ok([*CLI, "eval", str(run), "--episodes", "2", "--out", str(tmp_path / "e.json")], clean_env)
    assert json.loads(p.stdout)["episodes"] == 2
    p = run_ok([*CLI, "plot-curves", str(run), "--out", str(tmp_path / "c.png")], clean_env)
    json.loads(p.stdout)
