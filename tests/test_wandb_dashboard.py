"""What a W&B dashboard gets from a run (issue 21), read back from real offline run files.

wandb is the installed package in offline mode (``WANDB_MODE=offline``, every W&B dir under
``tmp_path``); the records are read from the run's ``run-*.wandb`` transaction log
(:func:`eqmarl.train.logger.read_wandb_run`) and its ``files/media``.  W&B's server and
every proxy point at a local socket that counts connections: offline, none may arrive.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from eqmarl.config import ConfigError
from eqmarl.launch.job import run_training
from eqmarl.train.checkpoint import CheckpointWriteError, export_policy, load_checkpoint, resolve_checkpoint
from eqmarl.train.logger import read_wandb_run
from eqmarl.train.nonfinite import NonFiniteError
from tests.conftest import TINY, compose, launch_cmd, run_ok, subprocess_env

# TINY with W&B offline; 200 env steps per iteration
OFFLINE = [o for o in TINY if not o.startswith("logger.wandb_mode")] + ["logger.wandb_mode=offline"]
# ... on MPE with short episodes (fewer frames to draw) and two evaluation episodes
MPE = [*OFFLINE, "env.episode_limit=10", "train.eval_episodes=2"]


class Listener:
    """A TCP socket on 127.0.0.1 that accepts and counts connections (W&B's server, proxies)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_thread: None) -> Any:
    """W&B offline with its dirs under tmp_path; its server and proxies a counting socket."""
    listener = Listener()
    for var, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path / "wandb-dir"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_BASE_URL": listener.url,
        "HTTP_PROXY": listener.url,
        "HTTPS_PROXY": listener.url,
        "http_proxy": listener.url,
        "https_proxy": listener.url,
    }.items():
        monkeypatch.setenv(var, value)
    for var in ("WANDB_API_KEY", "SLURM_JOB_ID", "SLURM_RESTART_COUNT", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    yield listener
    listener.sock.close()
    assert listener.connections == 0, "an offline run tried the network"


def train(tmp_path: Path, *overrides: str, name: str = "run", on_trainer: Any = None, base: list[str] = MPE) -> Path:
    run_dir = tmp_path / name
    run_training(compose([*base, *overrides]), run_dir, on_trainer=on_trainer)
    return run_dir


def test_offline_run_files_hold_media_flat_config_job_facts_summary_and_the_policy_artifact(
    offline: Listener, tmp_path: Path
) -> None:
    """3 evaluations, media at the first and the last (the default); the final policy as an artifact."""
    run = train(tmp_path, "train.total_env_steps=600", "train.eval_every=1", "logger.log_checkpoints=true")
    rec = read_wandb_run(run / "wandb")
    # config: flat keys to filter and group by, and the job's facts
    assert rec.config["model.name"] == "e2gn2" and rec.config["env.scenario"] == "simple_spread"
    assert rec.config["logger.media_every"] is None and rec.config["train.total_env_steps"] == 600
    assert not any(isinstance(v, dict) and v and k != "_wandb" for k, v in rec.config.items())
    assert {"job.world_size", "job.requeues", "job.torch_version", "job.device", "job.eqmarl_version"} <= set(
        rec.config
    )
    assert rec.config["job.world_size"] == 1  # the container this test runs in, if any (CI runs in docker)
    assert rec.config["job.container_runtime"] in ("none", "docker", "apptainer", "charliecloud")
    # media: the first and the last of 3 evaluations, as GIFs in the run's media dir
    media = [h for h in rec.history if "eval_episode.path" in h]
    assert [h["env_steps"] for h in media] == [200, 600]
    for h in media:
        gif = next((run / "wandb").glob("offline-run-*/files")) / h["eval_episode.path"]
        assert gif.suffix == ".gif" and gif.stat().st_size == h["eval_episode.size"] > 1000
    costs = [h["media_s"] for h in rec.history if "media_s" in h]
    assert len(costs) == 2 and all(c > 0 for c in costs)
    s = rec.summary
    assert s["stop_reason"] == "finished" and s["media_s_total"] == pytest.approx(sum(costs))
    evals = [h["eval_return"] for h in rec.history if "eval_return" in h]
    assert len(evals) == 3 and s["final_eval_return"] == s["eval_return"] == evals[-1]
    assert s["best_eval_return"] == max(evals)
    assert s["env_steps_per_s"] == pytest.approx(600 / s["wall_s"])
    assert "final_eval_win_rate" not in s  # MPE reports no wins
    # the artifact: the final policy in the layout eqmarl eval loads
    (art,) = rec.artifacts
    assert art["name"] == f"policy-{load_checkpoint(resolve_checkpoint(run))['wandb_run_id']}"
    assert art["type"] == "model" and set(art["aliases"]) == {"final", "latest"}
    assert set(art["files"]) == {"checkpoints/ckpt_000003.pt", "checkpoints/latest", "config.json"}
    assert art["metadata"]["iteration"] == 3 and art["metadata"]["env"] == "mpe"
    exported = tmp_path / "exported"
    export_policy(resolve_checkpoint(run), exported)
    assert art["files"]["checkpoints/ckpt_000003.pt"] == (exported / "checkpoints" / "ckpt_000003.pt").stat().st_size


def test_media_every_n_and_off(offline: Listener, tmp_path: Path) -> None:
    """media_every=2: the 1st, 3rd, ... evaluation and the last; 0: none, and no media_s."""
    from eqmarl.eval.render import EvalMedia

    def due(every: int | None, n: int) -> list[int]:
        m = EvalMedia(every, 3, False, "t", lambda *a: None)
        return [k for k in range(1, n + 1) if m.due(k, k == n)]

    assert due(None, 5) == [1, 5] and due(2, 6) == [1, 3, 5, 6] and due(1, 3) == [1, 2, 3] and due(0, 4) == []
    run = train(tmp_path, "train.total_env_steps=400", "train.eval_every=1", "logger.media_every=0")
    rec = read_wandb_run(run / "wandb")
    assert not any("media_s" in h or "eval_episode.path" in h for h in rec.history)
    assert not list((run / "wandb").rglob("*.gif"))


def test_media_time_is_left_out_of_wall_s_and_steps_per_s(tmp_path: Path, one_thread: None) -> None:
    """Media that take 4 s after the first iteration: they are ``media_s``, not wall time."""
    import csv
    import time

    from eqmarl.train.logger import Logger
    from eqmarl.train.trainer import Trainer

    class SlowMedia:
        def start(self, evaluation: int, last: bool) -> None:
            return None

        def finish(self, iteration: int, env_steps: int) -> float | None:
            if iteration != 1:
                return None
            time.sleep(4.0)
            return 4.0

    cfg = compose([*TINY, "train.total_env_steps=400", "train.eval_every=1"])
    tr = Trainer(cfg, tmp_path)
    tr.eval_media = SlowMedia()
    logger = Logger(cfg.logger, tmp_path, {}, total_env_steps=400)
    tr.run(logger)
    logger.close()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["media_s"] for r in rows] == ["4", ""]
    second = float(rows[1]["wall_s"]) - float(rows[0]["wall_s"])
    assert 0 < second < 4.0  # the second iteration's wall time holds no media seconds
    assert float(rows[0]["steps_per_s"]) > 200 / 4.0


def test_bad_media_and_artifact_settings_name_the_key() -> None:
    with pytest.raises(ConfigError) as e:
        compose(["logger.media_every=-1"])
    assert e.value.key == "logger.media_every" and "null (the first and the last evaluation), 0 (never)" in str(e.value)
    with pytest.raises(ConfigError) as e:
        compose(["logger.wandb_mode=disabled", "logger.log_checkpoints=true"])
    assert e.value.key == "logger.log_checkpoints" and "logger.wandb_mode=disabled" in str(e.value)


def test_a_nonfinite_stop_is_an_alert_and_a_summary_field(
    offline: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eqmarl.train.trainer import Trainer

    def diverge(self: Trainer, rollout: Any) -> dict[str, float]:
        raise NonFiniteError("training stopped at iteration 1: 3 optimizer steps in a row had a non-finite loss")

    monkeypatch.setattr(Trainer, "update", diverge)
    with pytest.raises(NonFiniteError):
        train(tmp_path, "logger.media_every=0", "logger.log_checkpoints=true")
    rec = read_wandb_run(tmp_path / "run" / "wandb")
    assert rec.summary["stop_reason"] == "non_finite"
    assert "non-finite loss" in rec.summary["alert/non_finite_stop"]
    (alert,) = rec.alerts
    assert alert["title"].startswith("eqmarl non_finite_stop") and alert["level"] == "ERROR"
    assert not rec.artifacts  # only a finished run logs its policy


def test_a_failed_final_checkpoint_is_an_alert(
    offline: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eqmarl.train.trainer as trainer_module

    def refuse(run_dir: Path, iteration: int, state: Any, keep: int = 3) -> Path:
        raise CheckpointWriteError(f"checkpoint not saved: cannot write ckpt_{iteration:06d}.pt (No space left)")

    monkeypatch.setattr(trainer_module, "save_checkpoint", refuse)
    with pytest.raises(CheckpointWriteError):
        train(tmp_path, "logger.media_every=0", "train.total_env_steps=200")
    rec = read_wandb_run(tmp_path / "run" / "wandb")
    assert rec.summary["stop_reason"] == "checkpoint_failed"
    assert "No space left" in rec.summary["alert/checkpoint_failed"]
    (alert,) = rec.alerts
    assert alert["title"].startswith("eqmarl checkpoint_failed: mpe-simple_spread")


def test_a_preemption_past_max_requeues_is_an_alert_with_the_slurm_facts(
    offline: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop without a signal of its own is TrainJob's preemption (USR2); at the restart limit
    it is not requeued, which the alert says.  The SLURM facts land in the config."""
    for var, value in {
        "SLURM_JOB_ID": "4242",
        "SLURM_ARRAY_JOB_ID": "4240",
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_JOB_NODELIST": "n[1-2]",
        "SLURM_RESTART_COUNT": "2",
        "EQMARL_IMAGE_DIGEST": "sha256:0123abcd",
    }.items():
        monkeypatch.setenv(var, value)
    train(tmp_path, "logger.media_every=0", "cluster.max_requeues=2", on_trainer=lambda t: t.request_stop())
    rec = read_wandb_run(tmp_path / "run" / "wandb")
    assert rec.summary["stop_reason"] == "preempted"
    assert "cluster.max_requeues=2" in rec.summary["alert/requeue_limit"]
    c = rec.config
    assert (c["job.slurm_job_id"], c["job.slurm_array_job_id"], c["job.slurm_array_task_id"]) == ("4242", "4240", "2")
    assert c["job.nodes"] == "n[1-2]" and c["job.requeues"] == 2 and c["job.image_digest"] == "sha256:0123abcd"


@pytest.mark.slow
def test_a_sweep_shares_one_group_and_touches_no_network(offline: Listener, tmp_path: Path) -> None:
    """``launch.py -m`` with two seeds: both runs in one W&B group named after the sweep."""
    env = subprocess_env()  # the fixture's WANDB_* and proxies included
    sweep = tmp_path / "sweep"
    fast = ["train.total_env_steps=200", "logger.media_every=0"]
    run_ok(launch_cmd("-m", *MPE, *fast, "seed=0,1", f"hydra.sweep.dir={sweep}"), env=env, timeout=600)
    groups = {read_wandb_run(d / "wandb").group for d in sorted(sweep.iterdir()) if (d / "wandb").is_dir()}
    assert len(list(sweep.glob("*/wandb"))) == 2 and groups == {f"{tmp_path.name}_sweep"}


# ------------------------------------------------------------------ eqmarl eval wandb:...
def test_eval_artifact_reference_parsing_and_the_offline_message(
    offline: Listener, capfd: pytest.CaptureFixture[str]
) -> None:
    from eqmarl.cli import main
    from eqmarl.eval.runs import parse_artifact_ref

    assert parse_artifact_ref("wandb:me/eqmarl/policy-ab12cd34:final") == "me/eqmarl/policy-ab12cd34:final"
    assert parse_artifact_ref("wandb:me/eqmarl/policy-ab12cd34") == "me/eqmarl/policy-ab12cd34:latest"
    for bad in ("wandb:me/policy", "wandb:me/eqmarl/policy x", "wandb:a/b/c:d:e"):
        assert main(["eval", bad]) == 2
        err = capfd.readouterr().err
        assert "wandb:<entity>/<project>/<artifact>[:alias]" in err and "Traceback" not in err
    assert main(["eval", "wandb:me/eqmarl/policy-ab12cd34:final", "--episodes", "2"]) == 2
    out = capfd.readouterr()
    assert out.out == "" and "WANDB_MODE=offline" in out.err and "eqmarl sync <run dir>" in out.err


def test_eval_loads_a_downloaded_artifact(
    offline: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The download cannot run offline: wandb.Api is replaced by one that 'downloads' the
    directory the artifact holds (export_policy's layout, what log_policy uploads)."""
    import wandb

    from eqmarl.cli import main

    run = train(tmp_path, "logger.media_every=0", "train.total_env_steps=200")
    held = tmp_path / "artifacts" / "policy-x:v0"
    export_policy(resolve_checkpoint(run), held)
    asked: list[tuple[str, str]] = []

    class Artifact:
        def download(self, root: str | None = None) -> str:
            return str(held)

    class Api:
        def artifact(self, name: str, type: str) -> Artifact:
            asked.append((name, type))
            return Artifact()

    monkeypatch.setattr(wandb, "Api", Api)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    assert main(["eval", "wandb:me/eqmarl/policy-x:final", "--episodes", "2"]) == 0
    result = json.loads(capfd.readouterr().out)
    assert asked == [("me/eqmarl/policy-x:final", "model")]
    assert result["run"] == "wandb:me/eqmarl/policy-x:final" and result["downloaded_to"] == str(held)
    assert result["model"] == "e2gn2" and result["episodes"] == 2
    assert (held / "eval_train.json").exists()


@pytest.mark.slow
def test_smax_evaluation_media(offline: Listener, tmp_path: Path) -> None:
    """SMACv2 on SMAX: the evaluation episode drawn with its units (one compile of the jitted step)."""
    run = train(
        tmp_path,
        "env=smax",
        "env.movement=discrete",
        "train.num_envs=4",
        "train.eval_episodes=2",
        "train.total_env_steps=40",
        "algo.rollout_steps=10",
        "algo.epochs=1",
        name="smax",
        base=OFFLINE,
    )
    rec = read_wandb_run(run / "wandb")
    (media,) = [h for h in rec.history if "eval_episode.path" in h]
    gif = next((run / "wandb").glob("offline-run-*/files")) / media["eval_episode.path"]
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames >= 2
    assert rec.summary["media_s"] > 0 and "final_eval_win_rate" in rec.summary
