"""``cluster=`` group: where runs execute, and its own check (every point of a sweep is
checked before anything is submitted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from eqmarl.config.errors import ConfigError, check_choice, check_positive


@dataclass
class ClusterConfig:
    """Where runs execute (``cluster=`` group).

    ``cluster=slurm`` submits every run of a sweep (``python launch.py -m ...``) as a
    SLURM job through hydra-submitit-launcher; the launcher's settings
    (``hydra.launcher.*``) are interpolated from these keys, so set ``cluster.nodes=2``,
    not ``hydra.launcher.nodes=2``.  The other keys are ignored by ``cluster=local``.
    """

    # local (in-process) | slurm (submitit)
    name: str = "local"
    # SLURM partition, account, QOS and node feature constraint (None: the site's default)
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    # nodes per job; a job with nodes * tasks_per_node > 1 ranks trains with learner=ddp
    nodes: int = 1
    # processes (ranks) per node: one per GPU on GPU nodes
    tasks_per_node: int = 1
    # GPUs per node (0: CPU job)
    gpus_per_node: int = 0
    # CPU cores per rank (None: the site's default); sets torch's threads when train.threads=0
    cpus_per_task: Optional[int] = None
    # memory per node in GB (None: the site's default)
    mem_gb: Optional[int] = None
    # wall-clock limit per job (each requeue gets it again), minutes
    timeout_min: int = 60
    # how many times a job may be requeued after a timeout or preemption (USR2): it
    # checkpoints, requeues and resumes; then it fails
    max_requeues: int = 3
    # USR2 is sent this many seconds before the time limit (time to finish the iteration)
    signal_delay_s: int = 120
    # extra sbatch options without the leading dashes, e.g. {mail-type: END, reservation: x};
    # on the command line: +cluster.additional_parameters.reservation=x
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    # shell lines run in the sbatch script before the job starts (module load, source venv)
    setup: list[str] = field(default_factory=list)
    # where submitit writes job scripts, pickles and stdout/stderr (%j: job id);
    # None: <sweep dir>/.submitit/%j
    log_dir: Optional[str] = None
    # job name in squeue (None: the hydra job name, "launch")
    job_name: Optional[str] = None
    # jobs of one sweep running at the same time (SLURM array parallelism)
    array_parallelism: int = 256
    # with container=none the jobs run this machine's Python, so before sbatch the launcher
    # checks here what they need from their node: the env's Python packages, DeepSpeed for
    # learner=deepspeed, StarCraft II for env.backend=sc2 (not looked for when SC2PATH is
    # set: sbatch passes it to the jobs, where it names StarCraft II on the compute nodes).
    # true: skip these checks, for compute nodes that have what this machine lacks (e.g.
    # StarCraft II set up by cluster.setup lines); a job whose node lacks it then fails
    # when it builds the env, and the launcher reports that job
    skip_local_checks: bool = False


# cluster.name
CLUSTERS = ("local", "slurm")


def check_cluster(c: ClusterConfig) -> None:
    """The cluster name, job sizes and limits, the signal before the time limit, sbatch options.

    Raises:
        ConfigError: naming the key and the allowed values.
    """
    check_choice("cluster.name", c.name, CLUSTERS)
    for k in ("nodes", "tasks_per_node", "timeout_min", "array_parallelism"):
        check_positive(f"cluster.{k}", getattr(c, k))
    for k in ("gpus_per_node", "max_requeues", "signal_delay_s"):
        check_positive(f"cluster.{k}", getattr(c, k), allow_zero=True)
    for k in ("cpus_per_task", "mem_gb"):
        if getattr(c, k) is not None:
            check_positive(f"cluster.{k}", getattr(c, k))
    if c.signal_delay_s >= c.timeout_min * 60:
        raise ConfigError(
            "cluster.signal_delay_s", c.signal_delay_s, f"less than cluster.timeout_min*60={c.timeout_min * 60}"
        )
    for k, v in c.additional_parameters.items():
        if not k or str(k).startswith("-"):
            raise ConfigError(f"cluster.additional_parameters.{k}", v, "sbatch option names without leading dashes")
