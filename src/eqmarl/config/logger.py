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


# logger.wandb_mode
WANDB_MODES = ("auto", "online", "offline", "disabled")


def check_logger(lg: LoggerConfig) -> None:
    """The W&B mode, the logging period and the W&B start and finish timeouts.

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
