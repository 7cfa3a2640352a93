"""Every accepted value works (issue 13, class 6): what validation lets through trains, or
is refused before anything runs (the generated cases are in test_config_fuzz.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eqmarl.config import ConfigError
from tests.conftest import TINY, compose, launch_cmd


def test_learner_deepspeed_without_the_package_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # what `import deepspeed` sees when it is not installed
    with pytest.raises(ConfigError) as e:
        compose(["learner=deepspeed"])
    assert e.value.key == "learner.name" and "pip install" in str(e.value)


def test_learner_ddp_in_one_process_trains_as_single_with_a_note(tmp_path: Path, capsys, one_thread) -> None:  # type: ignore[no-untyped-def]
    from eqmarl.launch.job import run_training

    cfg = compose([*TINY, "model=mlp", "train.num_envs=4", "train.total_env_steps=200", "learner=ddp"])
    run_training(cfg, tmp_path)
    assert "learner=ddp with one rank: training with learner=single" in capsys.readouterr().err
    assert json.loads((tmp_path / "config.json").read_text())["learner"]["name"] == "single"


def test_local_sweep_checks_every_point_before_job_0_runs(tmp_path: Path, clean_env) -> None:  # type: ignore[no-untyped-def]
    sweep = tmp_path / "sweep"
    cmd = launch_cmd("-m", *TINY, "model=mlp", "seed=0,-1", f"hydra.sweep.dir={sweep}")
    p = subprocess.run(cmd, capture_output=True, text=True, env=clean_env, timeout=120, check=False)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "sweep point #1" in p.stderr and "seed=-1" in p.stderr and "nothing was run (2 job(s)" in p.stderr
    assert not list(sweep.rglob("metrics.csv")) and not list(sweep.rglob("checkpoints"))
