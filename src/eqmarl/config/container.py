"""``container=`` group: the image each SLURM task runs in, and its own check.

:mod:`eqmarl.launch.container` runs it (and checks the image before ``sbatch``); that a
container needs ``cluster=slurm`` is checked in :mod:`eqmarl.config.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from eqmarl.config.errors import ConfigError, check_choice


@dataclass
class ContainerConfig:
    """The image each SLURM task runs in (``container=`` group; see :mod:`eqmarl.launch.container`).

    Only ``cluster=slurm`` uses it: every task's Python starts inside the image, with the
    sweep/run directories, the submitit folder and the project directory bound at the same
    paths and the SLURM/submitit variables kept.  Checked before ``sbatch``.
    """

    # none | docker | apptainer | charliecloud
    runtime: str = "none"
    # docker: an image reference (eqmarl:cpu, ghcr.io/<owner>/eqmarl:cpu); apptainer: a .sif
    # path or docker://, oras:// URI; charliecloud: an image directory or .sqfs file
    image: Optional[str] = None
    # the Python inside the image
    python: str = "python"
    # extra binds SRC[:DST] (scratch, datasets); the job's own directories are bound already
    binds: list[str] = field(default_factory=list)
    # bound at the same path when present on the node, so submitit's scontrol (requeue after
    # preemption, node names) works inside the image: SLURM client config and munge socket
    slurm_binds: list[str] = field(default_factory=lambda: ["/etc/slurm", "/run/munge"])
    # docker: variables (name prefixes) passed into the container from each task's environment;
    # apptainer and charliecloud keep the whole host environment
    env: list[str] = field(
        default_factory=lambda: [
            "SLURM_",
            "SUBMITIT_",
            "WANDB_",
            "EQMARL_",
            "CUDA_VISIBLE_DEVICES",
            "NCCL_",
            "OMP_NUM_THREADS",
            "MASTER_",
            "SC2PATH",
            "TMPDIR",
        ]
    )
    # GPUs into the container (docker --gpus all, apptainer --nv): auto (when
    # cluster.gpus_per_node > 0) | always | never
    gpus: str = "auto"
    # docker: pull the image before submitting when the engine does not have it
    pull: bool = False
    # extra options for the runtime's run command (e.g. [--shm-size=8g])
    options: list[str] = field(default_factory=list)


# container.runtime (none: no image; each other runtime is a branch of eqmarl.launch.container)
RUNTIMES = ("none", "docker", "apptainer", "charliecloud")
# container.gpus
GPU_MODES = ("auto", "always", "never")


def check_container(box: ContainerConfig) -> None:
    """The runtime and GPU mode, and an image for every runtime but ``none``.

    Raises:
        ConfigError: naming the key and the allowed values.
    """
    check_choice("container.runtime", box.runtime, RUNTIMES)
    check_choice("container.gpus", box.gpus, GPU_MODES)
    if box.runtime != "none" and not box.image:
        raise ConfigError(
            "container.image",
            box.image,
            f"an image for container.runtime={box.runtime} "
            "(docker: a tag such as eqmarl:cpu; apptainer: a .sif or docker:// URI; "
            "charliecloud: an image directory or .sqfs)",
        )
