"""``logger=`` group: the metrics sinks, and their own check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from eqmarl.config.errors import ConfigError, check_choice, check_positive


@dataclass
class LoggerConfig:
    """Metrics sinks (``logger=`` group)."""

    # W&B mode: auto (online when an API key is configured: WANDB_API_KEY or `wandb login`;
    # else offline, files in the run dir, `eqmarl sync` uploads later) | online | offline | disabled
    wandb_mode: str = "auto"
    # W&B project, entity (None: your default), group (sweep/experiment), job_type, tags
    project: str = "eqmarl"
    entity: Optional[str] = None
    group: Optional[str] = None
    job_type: str = "train"
    tags: list[str] = field(default_factory=list)
    # write metrics.csv in the run directory
    csv: bool = True
    # show a progress bar (env steps, steps/s, return)
    progress: bool = True
    # log training metrics every N iterations
    log_every: int = 1
    # seconds to wait for the W&B server when the run starts online; unreachable by then:
    # the run continues offline (upload later with `eqmarl sync <run dir>`)
    wandb_init_timeout_s: float = 30.0
    # seconds the end of an online run waits for W&B to finish uploading (a server that went
    # away after the start would block it); past that the files stay for `eqmarl sync <run dir>`
    wandb_finish_timeout_s: float = 60.0
    # W&B media: one episode of an evaluation drawn as a GIF (what `eqmarl render` draws) every
    # N-th evaluation and at the last; null: at the first and the last evaluation; 0: never.
    # Its cost is the `media_s` metric, left out of wall_s and steps_per_s
    media_every: Optional[int] = None
    # log the run's final policy (config + consolidated weights: what `eqmarl eval` loads) as a
    # W&B model artifact, evaluated elsewhere with `eqmarl eval wandb:<entity>/<project>/<name>`
    log_checkpoints: bool = False


# logger.wandb_mode
WANDB_MODES = ("auto", "online", "offline", "disabled")


def check_logger(lg: LoggerConfig) -> None:
    """The W&B mode, the logging and media periods, the W&B timeouts and the artifact switch.

    Raises:
        ConfigError: naming the key and the allowed values.
    """
    check_choice("logger.wandb_mode", lg.wandb_mode, WANDB_MODES)
    check_positive("logger.log_every", lg.log_every)
    wait = lg.wandb_init_timeout_s
    if not (0 < wait < float("inf")):  # also refuses nan
        raise ConfigError("logger.wandb_init_timeout_s", wait, "a finite number of seconds > 0")
    wait = lg.wandb_finish_timeout_s
    if not (0 < wait < float("inf")):  # also refuses nan
        raise ConfigError("logger.wandb_finish_timeout_s", wait, "a finite number of seconds > 0")
    every = lg.media_every
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
        raise ConfigError(
            "logger.media_every", every, "null (the first and the last evaluation), 0 (never) or an integer N >= 1"
        )
    if not isinstance(lg.log_checkpoints, bool):
        raise ConfigError("logger.log_checkpoints", lg.log_checkpoints, "true or false")
    if lg.log_checkpoints and lg.wandb_mode == "disabled":
        raise ConfigError(
            "logger.log_checkpoints", True, "false while logger.wandb_mode=disabled (the artifact goes to W&B)"
        )
