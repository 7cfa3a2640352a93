"""The real CLI end to end with tiny sizes: outputs, W&B run files read back."""

import csv
import json

from eqmarl.train.logger import read_wandb_history
from tests.conftest import TINY, launch_cmd, run_ok


def run_cli(tmp_path, env, *extra, name="run"):
    out = tmp_path / name
    p = run_ok(launch_cmd(*TINY, f"hydra.run.dir={out}", *extra), env=env, timeout=300)
    return out, p


def test_cli_end_to_end_writes_outputs(tmp_path, clean_env):
    out, p = run_cli(tmp_path, clean_env, "algo=mappo")
    assert (out / "learning_curve.png").stat().st_size > 1000
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["algo"]["name"] == "mappo" and cfg["train"]["num_envs"] == 8
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert {"env_steps", "wall_s", "eval_return"} <= set(rows[0])
    assert [int(r["env_steps"]) for r in rows] == [200, 400, 600, 800]
    assert rows[-1]["eval_return"] != "" and float(rows[-1]["eval_return"]) < 0
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("ckpt_*.pt"))
    assert ckpts == ["ckpt_000002.pt", "ckpt_000004.pt"]
    assert (out / "checkpoints" / "latest").read_text() == "ckpt_000004.pt"
    assert "final eval return" in p.stdout


def test_wandb_offline_run_files_hold_the_logged_metrics(tmp_path, clean_env):
    out, _ = run_cli(tmp_path, clean_env, "logger.wandb_mode=offline", "logger.group=testgroup")
    history = [r for r in read_wandb_history(out / "wandb") if "iteration" in r]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [h["env_steps"] for h in history] == [int(r["env_steps"]) for r in rows]
    for h, r in zip(history, rows):
        assert abs(h["train_return"] - float(r["train_return"])) < 1e-3 * max(1.0, abs(h["train_return"]))
        assert abs(h["loss"] - float(r["loss"])) < 1e-4 * max(1.0, abs(h["loss"]))
    evals = [h["eval_return"] for h in history if "eval_return" in h]
    assert len(evals) == 2


def test_cli_discrete_actions_and_mpe2_backend(tmp_path, clean_env):
    run_cli(tmp_path, clean_env, "env.continuous_actions=false", "env.scenario=simple_tag", name="tag")
    out, _ = run_cli(tmp_path, clean_env, "env.backend=mpe2", "env.workers=1", name="mpe2")
    assert (out / "metrics.csv").exists()


def test_wandb_mode_auto_follows_the_api_key(monkeypatch, tmp_path):
    from eqmarl.train.logger import resolve_wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_wandb_mode("auto") == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert resolve_wandb_mode("auto") == "online"
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    assert resolve_wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("auto") == "offline"
