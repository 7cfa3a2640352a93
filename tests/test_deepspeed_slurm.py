"""learner=deepspeed on 2 CPU ranks of the real local SLURM cluster: ZeRO 0-3 end with the
parameters of learner=ddp (within DS_DDP_TOLERANCE), and every rank agrees."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
from tests.conftest import TINY, launch_cmd
from tests.test_slurm import SLURM, _skip_without_cluster, job_logs

pytest.importorskip("deepspeed", reason="learner=deepspeed tests need: DS_BUILD_OPS=0 pip install deepspeed")

# 4 PPO iterations x 2 epochs x 2 minibatches on each of 2 ranks
RANKS = [
    "cluster.nodes=2",
    "cluster.tasks_per_node=1",
    "seed=0",
    "train.total_env_steps=1600",
    "train.eval_every=0",
    "train.checkpoint_every=0",
]
# DeepSpeed's all-reduce and clipping round differently from ddp's flat all-reduce
DS_DDP_TOLERANCE = 1e-5


def sweep(path: Path, env: dict, *overrides: str) -> None:
    p = subprocess.run(
        launch_cmd("-m", *SLURM, *TINY, *RANKS, f"hydra.sweep.dir={path}", *overrides),
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:] + job_logs(path)[-4000:]


@pytest.mark.slurm
def test_deepspeed_zero_0_to_3_on_two_ranks_equal_ddp(tmp_path: Path, clean_env: dict) -> None:
    _skip_without_cluster()
    sweep(tmp_path / "ddp", clean_env, "learner=ddp")
    sweep(tmp_path / "ds", clean_env, "learner=deepspeed", "learner.zero_stage=0,1,2,3")
    ref = load_checkpoint(resolve_checkpoint(next(d for d in (tmp_path / "ddp").iterdir() if d.name[0].isdigit())))
    runs = sorted(d for d in (tmp_path / "ds").iterdir() if d.name[0].isdigit())
    assert len(runs) == 4
    for d in runs:
        st = load_checkpoint(resolve_checkpoint(d))
        assert st["config"]["learner"]["name"] == "deepspeed" and st["iteration"] == 4
        assert (d / "checkpoints" / "deepspeed" / "iter_000004").is_dir()
        diff = max(float((st["policy"][k] - ref["policy"][k]).abs().max()) for k in ref["policy"])
        print(f"[deepspeed vs ddp] {d.name}: max |param difference| = {diff:.2e}")
        assert diff < DS_DDP_TOLERANCE, (d.name, diff)
    jobs = [j for j in (tmp_path / "ds" / ".submitit").iterdir() if j.is_dir() and re.fullmatch(r"\d+_\d+", j.name)]
    assert len(jobs) == 4
    for j in jobs:  # both ranks of every job end with the same parameters
        text = "\n".join(f.read_text(errors="replace") for f in j.glob("*_log.*"))
        digests = re.findall(r"rank (\d)/2: parameter digest (\w+)", text)
        assert sorted(r for r, _ in digests) == ["0", "1"] and len({dg for _, dg in digests}) == 1, (j.name, digests)
