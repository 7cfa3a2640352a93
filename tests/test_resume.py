"""Resume continues a run exactly: same parameters as an uninterrupted run (CPU, same seed)."""

import signal
import subprocess
import time

import torch

from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from eqmarl.train.trainer import Trainer
from tests.conftest import TINY, compose, launch_cmd, run_ok


def final_params(run_dir):
    return load_checkpoint(resolve_checkpoint(run_dir))["policy"]


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_trainer_state_roundtrip_is_exact(tmp_path):
    cfg = compose([*TINY, "train.total_env_steps=1000"])
    full = Trainer(cfg, tmp_path / "full")
    full.run()
    part = Trainer(compose([*TINY, "train.total_env_steps=1000", "train.max_iterations=2"]), tmp_path / "part")
    part.run()
    state = load_checkpoint(resolve_checkpoint(tmp_path / "part"))
    resumed = Trainer(cfg, tmp_path / "part")
    resumed.load_state_dict(state)
    assert resumed.iteration == 2
    resumed.run()
    assert resumed.iteration == full.iteration == 5
    assert_same(resumed.policy.state_dict(), full.policy.state_dict())
    assert resumed.last_eval == full.last_eval
    # and the checkpoint differs from a run with another seed (the comparison can fail)
    other = Trainer(compose([*TINY, "train.total_env_steps=1000", "seed=1"]), tmp_path / "other")
    other.run()
    assert not torch.equal(
        other.policy.state_dict()["head.log_std"], full.policy.state_dict()["head.log_std"]
    ) or not all(
        torch.equal(other.policy.state_dict()[k], full.policy.state_dict()[k]) for k in full.policy.state_dict()
    )


def test_fast_hanabi_resume_is_exact(tmp_path):
    """The batched Hanabi backend saves its games and deal generator: with Other-Play
    (its own random stream) a resumed run ends where an uninterrupted one does."""
    base = [o for o in TINY if not o.startswith("train.total_env_steps")] + [
        "env=hanabi_3c",
        "model=mlp",
        "algo.other_play=S3",
        "train.total_env_steps=1000",
        "train.eval_every=0",
    ]
    full = Trainer(compose(base), tmp_path / "full")
    full.run()
    part = Trainer(compose([*base, "train.max_iterations=2"]), tmp_path / "part")
    part.run()
    state = load_checkpoint(resolve_checkpoint(tmp_path / "part"))
    assert state["env"] is not None and "generator" in state["env"]
    resumed = Trainer(compose(base), tmp_path / "part")
    resumed.load_state_dict(state)
    resumed.run()
    assert resumed.iteration == full.iteration == 5
    assert_same(resumed.policy.state_dict(), full.policy.state_dict())
    for name in ("hands", "fireworks", "cur", "t"):
        assert torch.equal(getattr(resumed.env, name), getattr(full.env, name)), name
    # without the env state the games restart: the parameters differ (the check can fail)
    state.pop("env")
    fresh = Trainer(compose(base), tmp_path / "fresh")
    fresh.load_state_dict(state)
    fresh.run()
    assert not all(
        torch.equal(fresh.policy.state_dict()[k], full.policy.state_dict()[k]) for k in full.policy.state_dict()
    )


def test_cli_resume_matches_uninterrupted(tmp_path, clean_env):
    def run(*extra):
        p = subprocess.run(
            launch_cmd(*TINY, *extra), capture_output=True, text=True, env=clean_env, timeout=300, check=False
        )
        assert p.returncode == 0, p.stderr[-3000:]

    run(f"hydra.run.dir={tmp_path / 'full'}")
    run(f"hydra.run.dir={tmp_path / 'part'}", "train.max_iterations=1")
    assert resolve_checkpoint(tmp_path / "part").name == "ckpt_000001.pt"
    run(f"hydra.run.dir={tmp_path / 'ignored'}", f"resume={tmp_path / 'part'}", "train.max_iterations=null")
    assert resolve_checkpoint(tmp_path / "part").name == "ckpt_000004.pt"
    assert_same(final_params(tmp_path / "part"), final_params(tmp_path / "full"))
    rows = (tmp_path / "part" / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]


def test_ctrl_c_checkpoints_and_resume_is_exact(tmp_path, clean_env):
    many = [o for o in TINY if not o.startswith("train.total_env_steps")] + ["train.total_env_steps=20000"]
    run_ok(launch_cmd(*many, f"hydra.run.dir={tmp_path / 'full'}"), env=clean_env, timeout=600)
    proc = subprocess.Popen(
        launch_cmd(*many, f"hydra.run.dir={tmp_path / 'part'}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env,
    )
    metrics = tmp_path / "part" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]  # the shell's code for a SIGINT stop
    assert "stop requested" in out
    assert f"Continue with: python launch.py resume={tmp_path / 'part'}" in out
    stopped_at = int(resolve_checkpoint(tmp_path / "part").stem.split("_")[1])
    assert 3 <= stopped_at < 100
    run_ok(
        launch_cmd(*many, f"resume={tmp_path / 'part'}", f"hydra.run.dir={tmp_path / 'x'}"), env=clean_env, timeout=600
    )
    assert_same(final_params(tmp_path / "part"), final_params(tmp_path / "full"))


def test_checkpoint_is_atomic_and_damaged_latest_falls_back(tmp_path):
    save_checkpoint(tmp_path, 1, {"x": torch.ones(3)}, keep=2)
    save_checkpoint(tmp_path, 2, {"x": torch.full((3,), 2.0)}, keep=2)
    save_checkpoint(tmp_path, 3, {"x": torch.full((3,), 3.0)}, keep=2)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["ckpt_000002.pt", "ckpt_000003.pt", "latest"]  # no temp files left
    (tmp_path / "checkpoints" / "ckpt_000003.pt").write_bytes(b"truncated")
    assert resolve_checkpoint(tmp_path).name == "ckpt_000002.pt"


def test_a_run_saved_before_a_behaviour_changing_key_resumes_with_what_it_trained_with(capsys) -> None:  # type: ignore[no-untyped-def]
    """resume fills a key the saved config lacks with the value the run trained with
    (``KEYS_ADDED_LATER``), not today's default; a saved value keeps its own."""
    import dataclasses

    from omegaconf import OmegaConf

    from eqmarl.config import to_config
    from eqmarl.train.resume import KEYS_ADDED_LATER, saved_config_node

    saved = dataclasses.asdict(compose(["env=smax"]))
    assert saved["model"]["mixed_entropy"] == "per_part" != KEYS_ADDED_LATER["model.mixed_entropy"]
    assert saved_config_node(saved, "run").model.mixed_entropy == "per_part"  # saved: kept
    for key, value in KEYS_ADDED_LATER.items():
        old = dataclasses.asdict(compose(["env=smax"]))
        section, name = key.split(".")
        del old[section][name]  # a checkpoint written before the key existed
        capsys.readouterr()
        node = saved_config_node(old, "old_run")
        assert OmegaConf.select(node, key) == value and f"{key}={value}" in capsys.readouterr().err
        to_config(node)  # an allowed value: the resumed config validates
