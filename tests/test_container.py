"""container=none|docker|apptainer|charliecloud: config, the in-image python command, checks before sbatch.

The command lines are *run*: each runtime's executable is replaced on PATH by a script
that records its argument vector, and the wrapper submitit puts after ``srun`` is run by
bash with a task's environment, so quoting, per-task variables and binds are what the
real runtime would receive.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from eqmarl.config import ConfigError, ContainerConfig
from eqmarl.launch.container import check_container, python_command
from tests.conftest import compose

SUBMIT = ["-u", "-m", "submitit.core._submit", "/sweep dir/.submitit/%j"]


def fake_runtime(tmp_path: Path, name: str) -> Path:
    """A stand-in executable that writes its argv (and a few env vars) as JSON to $ARGV_OUT."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'user': os.environ.get('USER')}, open(os.environ['ARGV_OUT'], 'w'))\n"
    )
    exe.chmod(0o755)
    return bindir


def run_wrapper(cmd: str, tmp_path: Path, bindir: Path, **env: str) -> dict:
    """Run submitit's srun command line (the wrapper + submitit's arguments) as srun would, in one task."""
    out = tmp_path / "argv.json"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    full = dict(base, PATH=f"{bindir}:{os.environ['PATH']}", ARGV_OUT=str(out), **env)
    line = cmd + " " + " ".join(f"'{a}'" for a in SUBMIT)
    subprocess.run(["bash", "-c", line], check=True, env=full, cwd=tmp_path, timeout=30)
    return json.loads(out.read_text())


def test_container_group_composes_and_validates():
    cfg = compose(["cluster=slurm", "container=docker", "container.image=eqmarl:test"])
    assert cfg.container.runtime == "docker" and cfg.container.image == "eqmarl:test"
    assert compose([]).container.runtime == "none"
    cases = [
        (["cluster=slurm", "container=docker", "container.image=null"], "container.image"),
        (["cluster=slurm", "container.runtime=podman"], "container.runtime"),
        (["cluster=slurm", "container=apptainer", "container.gpus=yes"], "container.gpus"),
        (["container=docker"], "container.runtime"),  # cluster=local: the image is for SLURM jobs
        (["cluster=slurm", "container=docker", "+container.imag=x"], "container.imag"),
    ]
    for overrides, key in cases:
        with pytest.raises(ConfigError) as e:
            compose(overrides)
        assert e.value.key == key, (overrides, str(e.value))


def test_none_keeps_submitits_python():
    assert python_command(ContainerConfig(), ["/x"]) is None


def test_docker_command_per_task_env_binds_gpus(tmp_path):
    bindir = fake_runtime(tmp_path, "docker")
    slurm_conf = tmp_path / "etc-slurm"
    slurm_conf.mkdir()
    cfg = ContainerConfig(
        runtime="docker",
        image="eqmarl:cpu",
        binds=["/data:/mnt/data"],
        slurm_binds=[str(slurm_conf), "/does/not/exist"],
        options=["--shm-size=1g"],
    )
    cmd = python_command(cfg, ["/sweep dir", "/proj"], gpus_per_node=2)
    assert cmd is not None
    got = run_wrapper(
        cmd,
        tmp_path,
        bindir,
        SLURM_PROCID="3",
        SLURM_JOB_ID="42",
        SUBMITIT_EXECUTOR="slurm",
        WANDB_MODE="offline",
        SECRET_TOKEN="x",
    )["argv"]
    assert got[:2] == ["run", "--rm"]
    assert {"--init", "--network", "host", "--ipc", "--gpus", "all"} <= set(got)
    assert got[got.index("-u") + 1] == f"{os.getuid()}:{os.getgid()}"
    vols = [got[i + 1] for i, a in enumerate(got) if a == "-v"]
    assert vols == ["/sweep dir:/sweep dir", "/proj:/proj", "/data:/mnt/data", f"{slurm_conf}:{slurm_conf}"]
    envs = {got[i + 1] for i, a in enumerate(got) if a == "-e"}
    # each task's SLURM/submitit/W&B variables by name (values stay out of the command line)
    assert {"SLURM_PROCID", "SLURM_JOB_ID", "SUBMITIT_EXECUTOR", "WANDB_MODE", "HOME=/tmp"} <= envs
    assert "SECRET_TOKEN" not in envs
    assert got[got.index("-w") + 1] == str(tmp_path)
    i = got.index("eqmarl:cpu")
    assert got[i - 1] == "--shm-size=1g" and got[i + 1 :] == ["python", *SUBMIT]
    # CPU job: no GPU flags
    got = run_wrapper(python_command(cfg, ["/s"], 0), tmp_path, bindir)["argv"]  # type: ignore[arg-type]
    assert "--gpus" not in got


def test_apptainer_command(tmp_path):
    bindir = fake_runtime(tmp_path, "apptainer")
    cfg = ContainerConfig(
        runtime="apptainer", image="/shared/eqmarl.sif", python="/opt/venv/bin/python", slurm_binds=[str(tmp_path)]
    )
    got = run_wrapper(python_command(cfg, ["/sweep dir", "/proj"], 4), tmp_path, bindir)["argv"]  # type: ignore[arg-type]
    assert got[:2] == ["exec", "--nv"]
    assert got[got.index("--bind") + 1] == "/sweep dir:/sweep dir,/proj:/proj"
    assert f"{tmp_path}:{tmp_path}" in got
    assert "--cleanenv" not in got and "--containall" not in got
    assert got[-6:] == ["/shared/eqmarl.sif", "/opt/venv/bin/python", *SUBMIT]
    got = run_wrapper(python_command(cfg, ["/s"], 0), tmp_path, bindir)["argv"]  # type: ignore[arg-type]
    assert "--nv" not in got


def test_charliecloud_command_sets_user_and_image_env(tmp_path):
    bindir = fake_runtime(tmp_path, "ch-run")
    cfg = ContainerConfig(runtime="charliecloud", image="/var/tmp/eqmarl", slurm_binds=[])
    env = {k: v for k, v in os.environ.items() if k != "USER"}
    out = tmp_path / "argv.json"
    line = python_command(cfg, ["/sweep dir"], 0) + " " + " ".join(f"'{a}'" for a in SUBMIT)  # type: ignore[operator]
    subprocess.run(
        ["env", "-u", "USER", "bash", "-c", line],
        check=True,
        cwd=tmp_path,
        timeout=30,
        env=dict(env, PATH=f"{bindir}:{env['PATH']}", ARGV_OUT=str(out)),
    )
    got = json.loads(out.read_text())
    assert got["user"]  # ch-run refuses to start without $USER
    argv = got["argv"]
    assert argv[:2] == ["--set-env", "--no-passwd"] and argv[argv.index("--bind") + 1] == "/sweep dir:/sweep dir"
    assert "/etc/passwd:/etc/passwd" in argv and "/etc/group:/etc/group" in argv
    assert argv[argv.index("/var/tmp/eqmarl") + 1 :] == ["--", "python", *SUBMIT]


def test_checks_name_runtime_and_image(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for runtime in ("docker", "apptainer", "charliecloud"):
        with pytest.raises(ConfigError) as e:
            check_container(ContainerConfig(runtime=runtime, image="/x"))
        assert e.value.key == "container.runtime"
    monkeypatch.setenv("PATH", str(fake_runtime(tmp_path, "ch-run")) + ":" + str(fake_runtime(tmp_path, "apptainer")))
    with pytest.raises(ConfigError) as e:
        check_container(ContainerConfig(runtime="charliecloud", image=str(tmp_path / "no-such-image")))
    assert e.value.key == "container.image" and "ch-convert" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        check_container(ContainerConfig(runtime="charliecloud", image="docker://eqmarl:cpu"))
    assert e.value.key == "container.image" and "ch-convert" in str(e.value)
    check_container(ContainerConfig(runtime="charliecloud", image=str(tmp_path)), run=False)  # a directory image
    check_container(ContainerConfig(runtime="apptainer", image="docker://ghcr.io/x/eqmarl:cpu"))  # pulled by apptainer
    with pytest.raises(ConfigError) as e:
        check_container(ContainerConfig(runtime="apptainer", image="docker://x", options=["--cleanenv"]))
    assert e.value.key == "container.options"


@pytest.mark.docker
def test_docker_image_that_is_absent_names_container_image():
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no docker engine answers (bash containers/dockerd-up.sh)")
    with pytest.raises(ConfigError) as e:
        check_container(ContainerConfig(runtime="docker", image="eqmarl-no-such-image:0"))
    assert e.value.key == "container.image" and "container.pull" in str(e.value)


def test_image_with_other_cloudpickle_is_refused_before_sbatch(tmp_path, monkeypatch):
    """submitit's pickles cross the container boundary both ways: versions must agree."""
    import cloudpickle
    import submitit

    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "ch-run"
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    cfg = ContainerConfig(runtime="charliecloud", image=str(tmp_path))
    exe.write_text("#!/bin/sh\necho 0.0.1 $FAKE_SUBMITIT\n")
    exe.chmod(0o755)
    monkeypatch.setenv("FAKE_SUBMITIT", submitit.__version__)
    with pytest.raises(ConfigError) as e:
        check_container(cfg)
    assert e.value.key == "container.image"
    assert f"PIP_PINS='cloudpickle=={cloudpickle.__version__} submitit=={submitit.__version__}'" in str(e.value)
    exe.write_text(f"#!/bin/sh\necho {cloudpickle.__version__} {submitit.__version__}\n")
    check_container(cfg)


def test_charliecloud_mount_points_are_made_in_a_directory_image(tmp_path):
    """ch-run cannot create a bind's destination in the read-only image: eqmarl makes it before sbatch."""
    from eqmarl.launch.container import prepare_mount_points

    image = tmp_path / "img"
    (image / "etc" / "slurm").mkdir(parents=True)
    cfg = ContainerConfig(runtime="charliecloud", image=str(image), binds=["/data:/mnt/data"])
    made = prepare_mount_points(cfg, ["/work/project", "/etc/slurm"])
    assert made == ["/work/project", "/mnt/data"]
    assert (image / "work" / "project").is_dir() and (image / "mnt" / "data").is_dir()
    assert prepare_mount_points(cfg, ["/work/project"]) == []  # idempotent
    squash = tmp_path / "img.sqfs"
    squash.write_bytes(b"hsqs")
    with pytest.raises(ConfigError) as e:
        prepare_mount_points(ContainerConfig(runtime="charliecloud", image=str(squash)), ["/work/project"])
    assert e.value.key == "container.image" and "/work/project" in str(e.value)
    assert prepare_mount_points(ContainerConfig(runtime="docker", image="x"), ["/work"]) == []
