"""``eqmarl render RUN``: one deterministic episode of a trained run as a GIF (no display).

Frames are drawn from the entity graph, so every env with a graph renders the same way:
units/entities as discs at their positions (``EntityGraph.x``), coloured by team
(``node_group``: allies blue, enemies red) or, without teams, agents blue and other
entities grey; dead units (masked nodes) are not drawn.  With SMACv2's mixed actions an
agent that attacks is joined to its target by a line.  Envs without a graph (the lever
game, Hanabi) are shown as text: each agent's action per step, the return at the end.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from eqmarl.build import make_env
from eqmarl.core.env import Observation, StepResult
from eqmarl.core.episodes import run_episodes
from eqmarl.core.files import atomic_output
from eqmarl.core.log import get_logger
from eqmarl.eval.runs import load_agent, load_run, override_env

log = get_logger("eval")

ATTACK = 2  # the mixed action's attack choice (eqmarl.envs.smacv2_scenarios.CHOICE_ATTACK)


def _frame(
    x: torch.Tensor, mask: torch.Tensor, colors: list[str], lines: list[tuple[int, int]], title: str, lim: float
) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    for i, j in lines:
        ax.plot([x[i, 0], x[j, 0]], [x[i, 1], x[j, 1]], color="orange", lw=1.2, zorder=1)
    for k in range(x.shape[0]):
        if bool(mask[k]):
            ax.add_patch(plt.Circle((float(x[k, 0]), float(x[k, 1])), lim * 0.03, color=colors[k], zorder=2))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("P", palette=Image.Palette.ADAPTIVE)


def _text_frame(lines: list[str], title: str) -> Any:
    """A frame of text lines (envs without an entity graph: what each agent did)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    ax.axis("off")
    ax.text(0.02, 0.98, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=9, transform=ax.transAxes)
    ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("P", palette=Image.Palette.ADAPTIVE)


def _action_lines(action: Tensor) -> list[str]:
    """One line per agent of env 0's action (a lever, a move index, a continuous vector)."""
    out = []
    for a, act in enumerate(action[0]):
        value = act.tolist()
        text = ", ".join(f"{v:.2f}" for v in value) if isinstance(value, list) else f"{value:g}"
        out.append(f"agent {a}: action {text}")
    return out


@dataclass
class _Step:
    """What one step of env 0 showed: its entities (or, without a graph, its agents' actions)."""

    t: int
    x: Tensor | None  # [N, 2] positions (None: no entity graph)
    mask: Tensor | None  # [N] alive
    action: Tensor  # [A, ...] env 0's action
    done: bool
    final_x: Tensor | None = None  # the episode's last observation, when it ended here
    final_mask: Tensor | None = None
    episode_return: float = float("nan")


class EpisodeRecorder:
    """Records env 0's first episode, step by step, as ``run_episodes``' ``on_step`` hook.

    Recording only copies env 0's positions, masks and actions (cheap); :meth:`frames` draws
    them afterwards.  Steps after env 0's episode ended (the other envs of a batch still
    playing) are not recorded.  ``eqmarl render`` and the training's W&B media
    (``logger.media_every``, :class:`EvalMedia`) both draw through it.

    Args:
        n_agents: the env's agents (the first nodes of its entity graph).
        mixed_actions: SMACv2's mixed actions (an attack draws a line to its target).
    """

    def __init__(self, n_agents: int, mixed_actions: bool) -> None:
        self.n_agents = n_agents
        self.mixed_actions = mixed_actions
        self.steps: list[_Step] = []
        self.colors: list[str] = []  # per node, from the first observation
        self.lim = 1.0  # half the plotted square's side
        self.ended = False

    def __call__(self, t: int, obs: Observation, action: Tensor, res: StepResult) -> None:
        if self.ended:
            return
        og = obs.graph
        done = bool(res.done[0])
        self.ended = done
        step = _Step(t, None, None, action[0].detach().cpu().clone(), done)
        if done:
            step.episode_return = float(res.episode_return[0])
        if og is not None:
            if not self.steps:
                if og.node_group is not None:
                    self.colors = ["tab:blue" if int(c) == 0 else "tab:red" for c in og.node_group[0]]
                else:
                    self.colors = ["tab:blue" if k < self.n_agents else "grey" for k in range(og.num_nodes)]
                self.lim = max(1.0, float(og.x.abs().max())) * 1.1
            step.x, step.mask = og.x[0].detach().cpu().clone(), og.node_mask[0].detach().cpu().clone()
            if done:
                fg = res.final_obs.graph
                assert fg is not None
                step.final_x, step.final_mask = fg.x[0].detach().cpu().clone(), fg.node_mask[0].detach().cpu().clone()
        self.steps.append(step)

    def frames(self, title: str) -> list[Any]:
        """The recorded steps drawn (PIL images), a last frame where the episode ended."""
        out = []
        for s in self.steps:
            if s.x is None or s.mask is None:
                out.append(_text_frame(_action_lines(s.action[None]), f"{title}  t={s.t}"))
                if s.done:
                    out.append(_text_frame([f"return {s.episode_return:g}"], f"{title}  t={s.t + 1} (end)"))
                continue
            lines: list[tuple[int, int]] = []
            if self.mixed_actions:
                lines = [
                    (a, self.n_agents + int(s.action[a, 3]))
                    for a in range(self.n_agents)
                    if int(s.action[a, 0]) == ATTACK and bool(s.mask[a])
                ]
            out.append(_frame(s.x, s.mask, self.colors, lines, f"{title}  t={s.t}", self.lim))
            if s.done and s.final_x is not None and s.final_mask is not None:
                out.append(_frame(s.final_x, s.final_mask, self.colors, [], f"{title}  t={s.t + 1} (end)", self.lim))
        return out


def write_gif(frames: list[Any], out: Path, fps: int) -> None:
    """``frames`` as a looping GIF at ``out``, written atomically (OutputWriteError: nothing left there)."""
    with atomic_output(out) as f:  # a full or read-only disk: OutputWriteError, no partial GIF
        frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


@torch.no_grad()
def render_run(
    run: str,
    out: str | Path,
    overrides: list[str] | None = None,
    seed: int = 0,
    fps: int = 8,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Write one deterministic episode of ``run`` (newest checkpoint) as a GIF at ``out``.

    The policy acts as in the run's evaluations (EQC-wrapped where it was trained with
    ``model.eqc``).  Envs with an entity graph are drawn (see module docstring); envs
    without one (lever, Hanabi) get a text frame of each agent's action per step.

    Args:
        run: run directory or checkpoint file.
        out: the GIF's path (written atomically; missing directories are created).
        overrides: ``env.key=value`` settings.
        seed: env seed.
        fps: frames per second of the GIF.
        max_steps: only the episode's first ``max_steps`` steps.

    Returns:
        ``{"gif": path, "frames": n, "return": r, "win": w (SMACv2)}`` (``return`` and ``win``
        only if the episode ended within the steps drawn).

    Raises:
        ValueError: ``fps`` or ``max_steps`` below 1.
        OutputWriteError: the GIF could not be written (nothing is left at ``out``).
    """
    if fps < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"fps={fps}, max_steps={max_steps}; allowed: integers >= 1 (max_steps: or None)")
    ckpt = load_run(run)
    env_cfg = override_env(ckpt.env, list(overrides or []))
    env = make_env(env_cfg, 1, seed, "cpu")
    recorder = EpisodeRecorder(env.spec.n_agents, env.spec.action_type == "mixed")
    try:
        agent = load_agent(ckpt, env, env_cfg=env_cfg)
        stats = run_episodes(env, agent.actions, seed, max_steps=max_steps, on_step=recorder)
    finally:
        env.close()
    frames = recorder.frames(run)
    info: dict[str, Any] = {}
    if bool(stats.finished[0]):
        info["return"] = float(stats.returns[0])
        if stats.wins is not None:
            info["win"] = float(stats.wins[0])
    out = Path(out)
    write_gif(frames, out, fps)
    return {"gif": str(out), "frames": len(frames), **info}


class EvalMedia:
    """``logger.media_every``: an evaluation episode of a training run drawn as W&B media.

    The trainer calls :meth:`start` at each evaluation: when that evaluation is due, the
    returned :class:`EpisodeRecorder` rides along the evaluation (env 0's episode, the one
    the evaluation plays anyway).  :meth:`finish`, called once the iteration's timings are
    taken, draws it as ``eqmarl render`` does, writes the GIF and hands it to ``log_video``;
    it returns the seconds that took (``media_s``), which the trainer leaves out of
    ``wall_s`` and ``steps_per_s``.  A drawing that fails is reported once; training goes on.

    Args:
        every: ``logger.media_every``: None the first and the last evaluation, 0 never, N
            every N-th evaluation (the 1st, N+1-th, ...) and the last.
        n_agents: the eval env's agents.
        mixed_actions: SMACv2's mixed actions (attacks drawn as lines).
        title: the frames' title (the run's name).
        log_video: ``log_video(gif_path, caption, env_steps)`` logs the GIF (the file is
            removed once it returns).
        fps: the GIF's frames per second.
    """

    def __init__(
        self,
        every: int | None,
        n_agents: int,
        mixed_actions: bool,
        title: str,
        log_video: Callable[[Path, str, int], None],
        fps: int = 8,
    ) -> None:
        self.every = every
        self.n_agents, self.mixed_actions = n_agents, mixed_actions
        self.title = title
        self.log_video = log_video
        self.fps = fps
        self._recorder: EpisodeRecorder | None = None
        self._failed = False

    def due(self, evaluation: int, last: bool) -> bool:
        """Whether the ``evaluation``-th evaluation of the run (1-based) is drawn."""
        if self.every == 0 or self._failed:
            return False
        if self.every is None:
            return evaluation == 1 or last
        return last or (evaluation - 1) % self.every == 0

    def start(self, evaluation: int, last: bool) -> EpisodeRecorder | None:
        """The ``on_step`` hook for this evaluation's episodes (None: not due)."""
        self._recorder = EpisodeRecorder(self.n_agents, self.mixed_actions) if self.due(evaluation, last) else None
        return self._recorder

    def finish(self, iteration: int, env_steps: int) -> float | None:
        """Draw and log what :meth:`start`'s recorder saw.

        Returns:
            the seconds spent drawing, writing and logging (None: nothing was recorded).
        """
        recorder, self._recorder = self._recorder, None
        if recorder is None or not recorder.steps:
            return None
        started = time.perf_counter()
        try:
            frames = recorder.frames(f"{self.title} ({env_steps} steps)")
            last = recorder.steps[-1]
            caption = f"iteration {iteration}, {env_steps} env steps, {len(recorder.steps)} steps"
            if last.done:
                caption += f", return {last.episode_return:.3g}"
            with tempfile.TemporaryDirectory(prefix="eqmarl-media-") as tmp:
                gif = Path(tmp) / f"eval_{iteration:06d}.gif"
                write_gif(frames, gif, self.fps)
                self.log_video(gif, caption, env_steps)
        except Exception as e:  # media never stops training
            self._failed = True
            log.warning(f"no more evaluation media for this run: drawing failed ({type(e).__name__}: {e})")
        return time.perf_counter() - started
