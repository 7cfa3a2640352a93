"""cluster=slurm without a cluster: what is checked before sbatch, and how a failed job is reported.

The same paths run against the real local SLURM in ``tests/test_slurm.py``; here the
config checks run in process and the job report reads stand-in submitit jobs (one real
``FailedJobError`` from submitit's local executor), so every way a job can end is covered
in a fraction of a second each.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from eqmarl.config import ConfigError
from tests.conftest import compose

SLURM = ["cluster=slurm", "model=mlp"]


# ------------------------------------------------------------- checks before sbatch
@pytest.fixture
def no_sc2(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """A machine without StarCraft II: no SC2PATH, an empty home."""
    monkeypatch.delenv("SC2PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("eqmarl.envs.smacv2.starcraft2_candidates", lambda: [tmp_path / "StarCraftII"])


def test_sc2_without_starcraft2_is_refused_for_slurm_jobs_without_container(no_sc2):
    """The jobs run this machine's files: env.backend=sc2 is checked here, as for a local run."""
    with pytest.raises(ConfigError) as e:
        compose([*SLURM, "env=smacv2"])
    assert e.value.key == "env.backend" and e.value.value == "sc2"
    msg = str(e.value)
    assert "StarCraft II" in msg and "env.backend=smax" in msg
    assert "cluster.skip_local_checks=true" in msg and "SC2PATH" in msg and "container=" in msg


@pytest.mark.parametrize(
    "escape",
    [
        ["cluster.skip_local_checks=true"],  # compute nodes set up differently (cluster.setup lines)
        ["container=docker", "container.image=eqmarl:cpu"],  # the image has StarCraft II
    ],
)
def test_sc2_check_for_slurm_jobs_can_be_skipped(no_sc2, escape):
    cfg = compose([*SLURM, "env=smacv2", *escape])
    assert cfg.env.backend == "sc2"


def test_sc2path_names_starcraft2_on_the_compute_nodes(no_sc2, monkeypatch):
    """sbatch passes SC2PATH to the jobs: the login node does not look for it (a local run does)."""
    monkeypatch.setenv("SC2PATH", "/only/on/the/nodes/StarCraftII")
    assert compose([*SLURM, "env=smacv2"]).env.backend == "sc2"
    with pytest.raises(ConfigError, match="StarCraft II"):
        compose(["model=mlp", "env=smacv2"])


def _without(monkeypatch, *modules: str) -> None:
    """Make ``modules`` look not installed (what ``import`` and ``find_spec`` see then)."""
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


@pytest.mark.parametrize(
    "overrides, module, key",
    [
        (["learner=deepspeed"], "deepspeed", "learner.name"),
        (["env=hanabi", "env.backend=engine"], "hanabi_learning_environment", "env.backend"),
        (["env=smax"], "jaxmarl", "env.backend"),
        (["env=mpe", "env.backend=mpe2"], "mpe2", "env.backend"),
        (["env=mpe", "env.backend=vmas"], "vmas", "env.backend"),
    ],
)
@pytest.mark.parametrize("cluster", ["local", "slurm"])
def test_missing_python_packages_are_refused_before_the_run(monkeypatch, overrides, module, key, cluster):
    """A local run and a SLURM job with container=none (the same Python) need the same packages."""
    base = ["model=mlp", f"cluster={cluster}", *overrides]
    compose(base)  # installed here
    _without(monkeypatch, module)
    with pytest.raises(ConfigError) as e:
        compose(base)
    assert e.value.key == key
    assert module in str(e.value) and "pip install" in str(e.value)
    if cluster == "slurm":
        assert "cluster.skip_local_checks=true" in str(e.value)
        compose([*base, "cluster.skip_local_checks=true"])  # compute nodes with their own packages


def test_slurm_jobs_need_gpus_for_cuda_and_memory_for_the_rollout():
    with pytest.raises(ConfigError) as e:
        compose([*SLURM, "train.device=cuda"])
    assert e.value.key == "train.device" and "cluster.gpus_per_node" in str(e.value)
    assert compose([*SLURM, "train.device=cuda", "cluster.gpus_per_node=1"]).cluster.gpus_per_node == 1
    assert compose([*SLURM, "train.device=cuda", "+cluster.additional_parameters.gres=gpu:1"])
    with pytest.raises(ConfigError) as e:
        compose([*SLURM, "cluster.mem_gb=1", "cluster.tasks_per_node=2", "train.num_envs=50000"])
    assert e.value.key == "train.num_envs" and "cluster.mem_gb=1" in str(e.value)


# ---------------------------------------------------------------- the job report
class Paths:
    def __init__(self, folder: Path, job_id: str) -> None:
        self.stdout = folder / f"{job_id}_0_log.out"
        self.stderr = folder / f"{job_id}_0_log.err"


class StandInJob:
    """The part of ``submitit.Job`` the report reads."""

    def __init__(
        self, folder: Path, job_id: str, state: str, error: BaseException | None, stderr: str, result: Any = None
    ):
        self.job_id, self._state, self._error, self._result = job_id, state, error, result
        self.paths = Paths(folder, job_id)
        self.paths.stderr.write_text(stderr)
        self.paths.stdout.write_text("submitit INFO - Starting\n")
        self.num_tasks = 1

    def task(self, i: int) -> StandInJob:
        return self

    def exception(self) -> BaseException | None:
        return self._error

    def get_info(self, mode: str = "force") -> dict[str, str]:
        return {"State": self._state}

    def stderr(self) -> str:
        return self.paths.stderr.read_text()

    def results(self) -> list[Any]:
        return [self._result]


def _uncompleted(job_id: str, state: str) -> BaseException:
    from submitit.core.utils import UncompletedJobError

    return UncompletedJobError(f"Job {job_id} (task: 0) with path x\nhas not produced any output (state: {state})")


@pytest.fixture(scope="module")
def failed_job_error(tmp_path_factory) -> BaseException:  # type: ignore[no-untyped-def]
    """A real FailedJobError: a run that raised, through submitit's local executor."""
    import submitit

    def failing_run() -> None:  # a closure: pickled by value, not imported by the job
        raise RuntimeError("env.backend=sc2 needs StarCraft II, which is not on this machine")

    executor = submitit.LocalExecutor(folder=tmp_path_factory.mktemp("submitit"))
    executor.update_parameters(timeout_min=2)
    job = executor.submit(failing_run)
    error = job.exception()
    assert error is not None
    return error


RESUME = (
    "[eqmarl] stopped by SIGTERM at iteration 3 (600 env steps); checkpoint saved. "
    "Continue with: python launch.py resume=/runs/1_mpe_mlp_s1"
)
FAILED_CASES = {
    # a run that raised: the last line of its traceback
    "exception": ("FAILED", None, "", "RuntimeError: env.backend=sc2 needs StarCraft II, which is not on this machine"),
    # scancel: SIGTERM, the run checkpoints and says how to continue
    "scancel": (
        "CANCELLED by 0",
        "uncompleted",
        f"[eqmarl] iteration 3\n{RESUME}\n[eqmarl] done here\nsrun: error: n1: task 0: Exited with exit code 143\n",
        "cancelled (scancel): stopped by SIGTERM at iteration 3 (600 env steps); checkpoint saved. Continue with: "
        "python launch.py resume=/runs/1_mpe_mlp_s1 (exit code 143)",
    ),
    # kill -9 of the run's process on the node
    "kill -9": (
        "FAILED",
        "uncompleted",
        "[eqmarl] iteration 3\nsrun: error: n1: task 0: Killed\nsrun: Force Terminated StepId=6.0\n",
        "srun: error: n1: task 0: Killed",
    ),
    "time limit": (
        "TIMEOUT",
        "uncompleted",
        "[eqmarl] iteration 9\n"
        "slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***\n",
        "killed at its time limit (cluster.timeout_min): slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT "
        "2026-01-01T00:00:00 DUE TO TIME LIMIT ***",
    ),
    "node failure": ("NODE_FAIL", "uncompleted", "[eqmarl] iteration 2\n", "its node failed"),
    "out of memory": (
        "OUT_OF_MEMORY",
        "uncompleted",
        "slurmstepd: error: Detected 1 oom_kill event in StepId=5.0. Some of the step tasks have been OOM Killed.\n",
        "killed for exceeding its memory (cluster.mem_gb): slurmstepd: error: Detected 1 oom_kill event in "
        "StepId=5.0. Some of the step tasks have been OOM Killed.",
    ),
    # the run exited by itself with a message (sys.exit)
    "exit": (
        "FAILED",
        "uncompleted",
        "eqmarl: another process trains in /runs/x (pid 12)\nsrun: error: n1: task 0: Exited with exit code 2\n",
        "eqmarl: another process trains in /runs/x (pid 12) (exit code 2)",
    ),
}


@pytest.mark.parametrize("case", FAILED_CASES)
def test_a_failed_job_is_one_block_with_its_id_message_state_and_logs(tmp_path, failed_job_error, case):
    from eqmarl.launch.outcomes import job_outcome

    state, kind, stderr, message = FAILED_CASES[case]
    error = failed_job_error if kind is None else _uncompleted("7_1", state)
    job = StandInJob(tmp_path, "7_1", state, error, stderr)
    outcome = job_outcome(job, "#1 [seed=1]")
    assert outcome.failed and outcome.job_id == "7_1" and outcome.state == state
    assert outcome.message == message
    block = outcome.block().splitlines()
    assert block[0] == f"job 7_1 #1 [seed=1] failed (SLURM state {state}): {message}"
    assert block[1:] == [f"    stderr: {job.paths.stderr}", f"    stdout: {job.paths.stdout}"]


def test_a_sweep_reports_every_job_and_counts_the_failed(tmp_path, failed_job_error, capsys):
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from eqmarl.launch.outcomes import job_outcome, report, sweep_points

    ok = JobReturn(status=JobStatus.COMPLETED, _return_value=-120.5)
    ok.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": "/sweep/0_mpe_mlp_s0"}}})
    jobs = [
        StandInJob(tmp_path, "7_0", "COMPLETED", None, "", result=ok),
        StandInJob(tmp_path, "7_1", "FAILED", failed_job_error, ""),
        StandInJob(tmp_path, "7_2", "CANCELLED by 0", _uncompleted("7_2", "CANCELLED"), "srun: error: x\n"),
    ]
    points = sweep_points([["model=mlp", "seed=0"], ["model=mlp", "seed=1"], ["model=mlp", "seed=2"]])
    assert points == ["#0 [seed=0]", "#1 [seed=1]", "#2 [seed=2]"]
    outcomes = [job_outcome(j, p) for j, p in zip(jobs, points)]
    assert report(outcomes) == 2
    text = capsys.readouterr().err  # the eqmarl logger: stderr
    assert "job 7_0 #0 [seed=0] finished: run dir /sweep/0_mpe_mlp_s0, final eval return -120.50" in text
    assert "job 7_1 #1 [seed=1] failed (SLURM state FAILED): RuntimeError: env.backend=sc2" in text
    assert "job 7_2 #2 [seed=2] failed (SLURM state CANCELLED by 0): cancelled (scancel)" in text
    assert "2 of 3 job(s) of this sweep failed (7_1, 7_2): exit code 1" in text
