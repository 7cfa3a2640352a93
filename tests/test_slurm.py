"""Cluster mode against the real local SLURM cluster (slurm/local/up.sh): real sbatch, real jobs.

Every test submits through the real CLI, ``python launch.py -m cluster=slurm ...``, with
tiny sizes.  Tests marked ``slurm`` are skipped (with the reason) only when SLURM's
client tools are not installed; ``.ci/run`` starts the cluster first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch

from eqmarl.config import ConfigError
from eqmarl.launch.job import parameter_digest
from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
from eqmarl.train.logger import read_wandb_history
from tests.conftest import TINY, compose, launch_cmd


def _skip_without_cluster() -> None:
    """Skip when SLURM is not installed here; a cluster that is installed but down fails the test."""
    if shutil.which("sinfo") is None:
        pytest.skip("SLURM client tools (sinfo) not installed; bring up the local cluster with: sudo slurm/local/up.sh")
    p = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0 and p.stdout.strip(), (
        f"SLURM does not answer (sinfo: {p.stderr.strip()[:300]}); run: sudo slurm/local/up.sh"
    )


# Short wall-clock limit: with timeout_min < ~50 submitit counts a USR2 as a timeout.
SLURM = ["model=mlp", "cluster=slurm", "cluster.timeout_min=10", "cluster.signal_delay_s=60", "train.threads=1"]
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, like a W&B API key


def submit(sweep_dir: Path, *overrides: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = launch_cmd("-m", *SLURM, *TINY, f"hydra.sweep.dir={sweep_dir}", *overrides)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def job_logs(sweep_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((sweep_dir / ".submitit").rglob("*_log.*")))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------ no cluster needed
def test_slurm_config_composes_and_is_typed():
    cfg = compose(
        ["cluster=slurm", "cluster.nodes=2", "cluster.gpus_per_node=4", "+cluster.additional_parameters.reservation=x"]
    )
    assert cfg.cluster.name == "slurm" and cfg.cluster.nodes == 2 and cfg.cluster.gpus_per_node == 4
    assert cfg.cluster.additional_parameters == {"reservation": "x"}
    for bad, key in (
        ("cluster.nodes=0", "cluster.nodes"),
        ("cluster.timeout_min=-5", "cluster.timeout_min"),
        ("cluster.max_requeues=-1", "cluster.max_requeues"),
        ("learner.backend=mpi", "learner.backend"),
    ):
        with pytest.raises(ConfigError) as e:
            compose(["cluster=slurm", bad])
        assert e.value.key == key


def test_site_profile_composes():
    profiles = Path(__file__).resolve().parents[1] / "slurm" / "profiles"
    cfg = compose([f"hydra.searchpath=[file://{profiles}]", "cluster=example_gpu"])
    assert cfg.cluster.partition == "gpu" and cfg.cluster.gpus_per_node == cfg.cluster.tasks_per_node == 4
    assert cfg.train.device == "auto"


def test_cluster_slurm_without_multirun_says_use_m(clean_env):
    p = subprocess.run(
        launch_cmd("cluster=slurm", *TINY), capture_output=True, text=True, env=clean_env, timeout=120, check=False
    )
    assert p.returncode == 2
    assert "add -m" in p.stderr


# ------------------------------------------------------------------------ real SLURM
@pytest.mark.slurm
def test_sweep_runs_two_jobs_and_never_writes_the_api_key(tmp_path, clean_env):
    """Two-point sweep through the CLI; W&B offline with WANDB_API_KEY set in the submitting shell."""
    _skip_without_cluster()
    env = dict(clean_env, WANDB_API_KEY=FAKE_KEY)
    sweep = tmp_path / "sweep"
    p = submit(sweep, "seed=0,1", "logger.wandb_mode=offline", env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    runs = sorted(d for d in sweep.iterdir() if d.is_dir() and not d.name.startswith("."))
    assert [d.name for d in runs] == ["0_mpe_mlp_s0", "1_mpe_mlp_s1"]
    groups, finals = set(), []
    for d in runs:
        for f in ("config.json", "metrics.csv", "learning_curve.png", ".hydra/config.yaml"):
            assert (d / f).exists(), d / f
        assert resolve_checkpoint(d).name == "ckpt_000004.pt"
        rows = [r for r in read_wandb_history(d / "wandb") if "iteration" in r]
        assert [r["env_steps"] for r in rows] == [200, 400, 600, 800]
        groups.add(load_checkpoint(resolve_checkpoint(d))["config"]["logger"]["group"])
        finals.append(load_checkpoint(resolve_checkpoint(d))["policy"])
    assert groups == {f"{tmp_path.name}_sweep"}  # one W&B group per sweep, named after it
    assert not all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])  # seeds differ
    logs = job_logs(sweep)
    assert logs.count("Job completed successfully") >= 2
    # the key was in the submitting environment (sbatch exports it to the jobs), yet no
    # file of the sweep has it: configs, hydra logs, job logs, submitit pickles, checkpoints, W&B files
    key = FAKE_KEY.encode()
    leaked = [str(f) for f in sweep.rglob("*") if f.is_file() and key in f.read_bytes()]
    assert leaked == []


def wait_for_rows(proc: subprocess.Popen, metrics: Path, rows: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) <= rows):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.2)


def first_job_id(sweep: Path) -> str:
    return next(d.name for d in (sweep / ".submitit").iterdir() if d.name.isdigit())


@pytest.mark.slurm
def test_ddp_two_nodes_gloo_identical_parameters_and_exact_resume(tmp_path, clean_env):
    """2 nodes x 1 task: DDP over gloo; a second, preempted copy of the job resumes every rank exactly."""
    _skip_without_cluster()
    ddp = [
        "cluster.nodes=2",
        "cluster.tasks_per_node=1",
        "seed=0",
        "train.total_env_steps=24000",
        "train.eval_every=50",
        "train.checkpoint_every=50",
    ]
    ref_sweep, pre_sweep = tmp_path / "ref", tmp_path / "preempted"
    ref = subprocess.Popen(
        launch_cmd("-m", *SLURM, *TINY, *ddp, f"hydra.sweep.dir={ref_sweep}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env,
    )
    pre = subprocess.Popen(
        launch_cmd("-m", *SLURM, *TINY, *ddp, f"hydra.sweep.dir={pre_sweep}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env,
    )
    wait_for_rows(pre, pre_sweep / "0_mpe_mlp_s0" / "metrics.csv", 3)
    pre_id = first_job_id(pre_sweep)
    subprocess.run(["scancel", "--signal=USR2", pre_id], check=True, timeout=30)
    for proc in (ref, pre):
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, out[-3000:]

    run, logs = ref_sweep / "0_mpe_mlp_s0", job_logs(ref_sweep)
    assert "global_rank=1(2)" in logs and "node=1(2)" in logs  # a second rank on the second node
    assert re.search(r"rank 0/2: torch.distributed gloo", logs) and re.search(r"rank 1/2: torch.distributed gloo", logs)
    digests = dict(re.findall(r"rank (\d)/2: parameter digest ([0-9a-f]{16})", logs))
    assert set(digests) == {"0", "1"}
    assert digests["0"] == digests["1"]  # both ranks end with identical parameters
    state = load_checkpoint(resolve_checkpoint(run))
    assert parameter_digest(state["policy"]) == digests["0"]
    assert state["config"]["learner"]["name"] == "ddp"  # chosen automatically for 2 ranks
    assert len(state["ranks"]) == 2 and not torch.equal(
        state["ranks"][0]["rng"]["torch"], state["ranks"][1]["rng"]["torch"]
    )
    # per-rank batch 8 envs x 25 steps = 200 frames; env_steps count both ranks
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == [400 * i for i in range(1, 61)]

    # the preempted copy: both ranks stopped at the same iteration, requeued, resumed, same result
    logs = job_logs(pre_sweep)
    assert logs.count("got SIGUSR2: checkpointing at the end of this iteration") == 2
    assert f"Requeued job {pre_id}" in logs
    pre_digests = re.findall(r"rank \d/2: parameter digest ([0-9a-f]{16})", logs)
    # each rank printed one digest at the preemption and one at the end: two values, both ranks in sync
    assert len(pre_digests) == 4 and len(set(pre_digests)) == 2 and digests["0"] in pre_digests
    final = load_checkpoint(resolve_checkpoint(pre_sweep / "0_mpe_mlp_s0"))
    assert final["iteration"] == 60
    assert_same(final["policy"], state["policy"])


@pytest.mark.slurm
def test_preempted_job_checkpoints_requeues_and_resumes_exactly(tmp_path, clean_env):
    _skip_without_cluster()
    longer = ["train.total_env_steps=30000", "train.eval_every=50", "train.checkpoint_every=50"]
    ref = subprocess.Popen(
        launch_cmd("model=mlp", *TINY, *longer, "train.threads=1", f"hydra.run.dir={tmp_path / 'ref'}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env,
    )
    sweep = tmp_path / "sweep"
    cmd = launch_cmd("-m", *SLURM, *TINY, *longer, "seed=0", "logger.wandb_mode=offline", f"hydra.sweep.dir={sweep}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env)
    wait_for_rows(proc, sweep / "0_mpe_mlp_s0" / "metrics.csv", 3)
    job_id = first_job_id(sweep)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]
    ref_out, _ = ref.communicate(timeout=400)
    assert ref.returncode == 0, ref_out[-3000:]

    logs = job_logs(sweep)
    assert "got SIGUSR2: checkpointing at the end of this iteration" in logs
    assert f"Requeued job {job_id}" in logs
    stopped = int(re.search(r"resumed \S+ at iteration (\d+)", logs).group(1))
    assert 3 <= stopped < 150
    # slurmdbd records the final state asynchronously: poll it for a while
    for _ in range(60):
        sacct = subprocess.run(
            ["sacct", "-n", "-X", "-j", job_id, "-D", "-o", "State"], capture_output=True, text=True, check=False
        ).stdout
        if "COMPLETED" in sacct:
            break
        time.sleep(1)
    assert "REQUEUED" in sacct and "COMPLETED" in sacct, sacct
    run = sweep / "0_mpe_mlp_s0"
    final = load_checkpoint(resolve_checkpoint(run))
    assert final["iteration"] == 150
    assert_same(final["policy"], load_checkpoint(resolve_checkpoint(tmp_path / "ref"))["policy"])
    rows = run.joinpath("metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 151))
    # the requeued job continued the same W&B run (id from the checkpoint)
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and len({d.name.rsplit("-", 1)[1] for d in offline}) == 1
    assert offline[0].name.endswith(final["wandb_run_id"])
    sync = subprocess.run(
        ["eqmarl", "sync", str(sweep), "--dry-run"],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=120,
        check=False,
    )
    assert sync.returncode == 0 and "Would sync 2 run(s)" in sync.stdout + sync.stderr, sync.stdout + sync.stderr


@pytest.mark.slurm
@pytest.mark.parametrize(
    "override, key",
    [
        ("cluster.nodes=0", "cluster.nodes"),
        ("cluster.nodez=2", "cluster.nodez"),
        ("+cluster.nodez=2", "cluster.nodez"),
        ("cluster.timeout_min=-5", "cluster.timeout_min"),
        ("cluster.nodes=1,0", "cluster.nodes"),
    ],
)
def test_bad_cluster_config_fails_before_sbatch(tmp_path, clean_env, override, key):
    _skip_without_cluster()
    name = f"eqmarl-bad-{uuid.uuid4().hex[:8]}"
    p = submit(tmp_path / "sweep", "seed=0,1", f"cluster.job_name={name}", override, env=clean_env, timeout=120)
    assert p.returncode != 0
    assert key in p.stderr + p.stdout
    assert not (tmp_path / "sweep" / ".submitit").exists()
    assert (
        subprocess.run(["squeue", "-h", "-n", name], capture_output=True, text=True, check=False).stdout.strip() == ""
    )
    hist = subprocess.run(
        ["sacct", "-n", "-X", "--name", name, "-S", "now-1hours", "-o", "JobID"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert hist.stdout.strip() == ""


def assert_nothing_submitted(sweep: Path, name: str) -> None:
    """No job of this name in the queue or in the accounting, no submitit folder."""
    assert not (sweep / ".submitit").exists()
    queue = subprocess.run(["squeue", "-h", "-n", name], capture_output=True, text=True, check=False)
    assert queue.stdout.strip() == ""
    hist = subprocess.run(
        ["sacct", "-n", "-X", "--name", name, "-S", "now-1hours", "-o", "JobID"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert hist.stdout.strip() == ""


def array_job(sweep: Path, index: int) -> str:
    """The SLURM job id of sweep point ``index`` (``<array id>_<index>``)."""
    return next(d.name for d in (sweep / ".submitit").iterdir() if d.name.endswith(f"_{index}"))


@pytest.mark.slurm
def test_smacv2_without_starcraft2_is_refused_before_sbatch(tmp_path, clean_env):
    """The headline command on a machine without StarCraft II, container=none: the jobs
    would run this machine's files, so it is refused here, as a local run is (old: the job
    was submitted, failed on the node and the launcher ended with a traceback)."""
    _skip_without_cluster()
    if Path("/opt/StarCraftII/Versions").is_dir():
        pytest.skip("StarCraft II is installed here")
    env = {k: v for k, v in clean_env.items() if k != "SC2PATH"}
    env["HOME"] = str(tmp_path)  # no ~/StarCraftII
    name = f"eqmarl-sc2-{uuid.uuid4().hex[:8]}"
    sweep = tmp_path / "sweep"
    p = submit(sweep, "env=smacv2", f"cluster.job_name={name}", env=env, timeout=120)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert "invalid config: env.backend='sc2'" in p.stderr and "nothing was submitted" in p.stderr
    assert "cluster.skip_local_checks=true" in p.stderr and "SC2PATH" in p.stderr  # the ways past it
    assert_nothing_submitted(sweep, name)


@pytest.mark.slurm
def test_failed_job_is_one_block_and_the_other_jobs_finish(tmp_path, clean_env):
    """SC2PATH names StarCraft II on the compute nodes (so the launcher submits), but it is not
    there: that job raises; the launcher reports it in one block, the other job's result too, exit 1."""
    _skip_without_cluster()
    env = dict(clean_env, SC2PATH=str(tmp_path / "nodes" / "StarCraftII"))
    sweep = tmp_path / "sweep"
    p = submit(sweep, "env=mpe,smacv2", env=env)
    err = p.stderr
    assert p.returncode == 1, err[-3000:]
    assert "Traceback" not in err  # no frames of the launcher
    failed = array_job(sweep, 1)
    block = re.search(
        rf"job {failed} #1 \[env=smacv2\] failed \(SLURM state FAILED\): (.+)\n\s+stderr: (\S+)\n\s+stdout: (\S+)", err
    )
    assert block, err[-3000:]
    assert block.group(1).startswith("eqmarl.envs.smacv2.StarCraftIINotFound: env.backend=sc2 needs StarCraft II")
    job_err, job_out = Path(block.group(2)), Path(block.group(3))
    assert job_out.is_file() and "Traceback" in job_err.read_text()  # the job's own traceback is in its log
    assert block.group(1) in job_err.read_text()
    done = re.search(rf"job {array_job(sweep, 0)} #0 \[env=mpe\] finished: run dir (\S+), final eval return", err)
    assert done, err[-3000:]
    assert resolve_checkpoint(Path(done.group(1))).name == "ckpt_000004.pt"
    assert f"1 of 2 job(s) of this sweep failed ({failed}): exit code 1" in err
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-j", failed, "-o", "State"], capture_output=True, text=True, check=False
    ).stdout
    assert "FAILED" in sacct  # SLURM records the run's exception as a failed job (old: COMPLETED)


@pytest.mark.slurm
def test_cancelled_job_is_reported_with_its_resume_hint(tmp_path, clean_env):
    """scancel one job of a sweep: SIGTERM, it checkpoints; the launcher reports it and the other job, exit 1."""
    _skip_without_cluster()
    sweep = tmp_path / "sweep"
    cmd = launch_cmd("-m", *SLURM, *TINY, "train.total_env_steps=800,60000", f"hydra.sweep.dir={sweep}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env)
    wait_for_rows(proc, sweep / "1_mpe_mlp_s0" / "metrics.csv", 2)
    job_id = array_job(sweep, 1)
    subprocess.run(["scancel", job_id], check=True, timeout=30)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    point = r"#1 \[train.total_env_steps=60000\]"
    assert re.search(rf"job {job_id} {point} failed \(SLURM state CANCELLED[^)]*\): cancelled \(scancel\)", err), err

    assert f"resume={sweep / '1_mpe_mlp_s0'}" in err
    assert f"stderr: {sweep / '.submitit' / job_id / f'{job_id}_0_log.err'}" in err
    assert re.search(rf"job {array_job(sweep, 0)} #0 \[train.total_env_steps=800\] finished: run dir", err)


@pytest.mark.slurm
def test_partition_sbatch_refuses_is_bad_input(tmp_path, clean_env):
    """A value only SLURM can check (a partition it does not have): sbatch's reason, exit 2, no traceback."""
    _skip_without_cluster()
    p = submit(tmp_path / "sweep", "seed=0,1", "cluster.partition=no-such-partition", env=clean_env, timeout=120)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert "eqmarl: sbatch refused the jobs: invalid partition specified: no-such-partition" in p.stderr
    assert "nothing was submitted (2 job(s) in this sweep)" in p.stderr
