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
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from eqmarl.build import make_env
from eqmarl.core.env import Observation, StepResult
from eqmarl.core.episodes import run_episodes
from eqmarl.core.files import atomic_output
from eqmarl.eval.runs import load_agent, load_run, override_env

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
    frames: list[Any] = []
    try:
        agent = load_agent(ckpt, env, env_cfg=env_cfg)
        n_agents = env.spec.n_agents
        colors: list[str] = []  # per node, from the first observation
        lim = 1.0  # half the plotted square's side

        def draw(t: int, obs: Observation, action: Tensor, res: StepResult) -> None:
            nonlocal colors, lim
            og = obs.graph
            if og is None:
                frames.append(_text_frame(_action_lines(action), f"{run}  t={t}"))
                if bool(res.done[0]):
                    end = f"return {float(res.episode_return[0]):g}"
                    frames.append(_text_frame([end], f"{run}  t={t + 1} (end)"))
                return
            if t == 0:
                if og.node_group is not None:
                    colors = ["tab:blue" if int(c) == 0 else "tab:red" for c in og.node_group[0]]
                else:
                    colors = ["tab:blue" if k < n_agents else "grey" for k in range(og.num_nodes)]
                lim = max(1.0, float(og.x.abs().max())) * 1.1
            lines: list[tuple[int, int]] = []
            if env.spec.action_type == "mixed":
                alive = og.node_mask[0]
                lines = [
                    (a, n_agents + int(action[0, a, 3]))
                    for a in range(n_agents)
                    if int(action[0, a, 0]) == ATTACK and bool(alive[a])
                ]
            frames.append(_frame(og.x[0], og.node_mask[0], colors, lines, f"{run}  t={t}", lim))
            if bool(res.done[0]):
                fg = res.final_obs.graph
                assert fg is not None
                frames.append(_frame(fg.x[0], fg.node_mask[0], colors, [], f"{run}  t={t + 1} (end)", lim))

        stats = run_episodes(env, agent.actions, seed, max_steps=max_steps, on_step=draw)
    finally:
        env.close()
    info: dict[str, Any] = {}
    if bool(stats.finished[0]):
        info["return"] = float(stats.returns[0])
        if stats.wins is not None:
            info["win"] = float(stats.wins[0])
    out = Path(out)
    with atomic_output(out) as f:  # a full or read-only disk: OutputWriteError, no partial GIF
        frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return {"gif": str(out), "frames": len(frames), **info}
