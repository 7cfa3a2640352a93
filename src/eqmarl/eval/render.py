"""``eqmarl render RUN``: one deterministic episode of a trained run as a GIF (no display).

Frames are drawn from the entity graph, so every env with a graph renders the same way:
units/entities as discs at their positions (``EntityGraph.x``), coloured by team
(``node_group``: allies blue, enemies red) or, without teams, agents blue and other
entities grey; dead units (masked nodes) are not drawn.  With SMACv2's mixed actions an
agent that attacks is joined to its target by a line.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from eqmarl.build import make_env
from eqmarl.eval.crossplay import load_run
from eqmarl.eval.evaluate import override_env
from eqmarl.models import make_policy

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


@torch.no_grad()
def render_run(
    run: str,
    out: str | Path,
    overrides: list[str] | None = None,
    seed: int = 0,
    fps: int = 8,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Write one deterministic episode of ``run`` (newest checkpoint) as a GIF at ``out``
    (its first ``max_steps`` steps when given).

    Returns:
        ``{"gif": path, "frames": n, "return": r, "win": w (SMACv2) }``.
    """
    ckpt = load_run(run)
    env_cfg = override_env(ckpt.env, list(overrides or []))
    env = make_env(env_cfg, 1, seed, "cpu")
    try:
        policy = make_policy(ckpt.model, env.spec, centralized_critic=ckpt.algo.name == "mappo")
        policy.load_state_dict(ckpt.state)
        policy.eval()
        obs = env.reset(seed=seed)
        if obs.graph is None:
            raise ValueError(f"env.name={env_cfg.name} provides no entity graph to draw")
        g = obs.graph
        n_agents = env.spec.n_agents
        if g.node_group is not None:
            colors = ["tab:blue" if int(c) == 0 else "tab:red" for c in g.node_group[0]]
        else:
            colors = ["tab:blue" if k < n_agents else "grey" for k in range(g.num_nodes)]
        lim = max(1.0, float(g.x.abs().max())) * 1.1
        frames = []
        info: dict[str, Any] = {}
        steps = max(1, env.spec.episode_limit)
        for t in range(steps if max_steps is None else min(steps, max_steps)):
            action = policy.distribution(obs).mode()
            lines: list[tuple[int, int]] = []
            og = obs.graph
            assert og is not None
            if env.spec.action_type == "mixed":
                alive = og.node_mask[0]
                lines = [
                    (a, n_agents + int(action[0, a, 3]))
                    for a in range(n_agents)
                    if int(action[0, a, 0]) == ATTACK and bool(alive[a])
                ]
            frames.append(_frame(og.x[0], og.node_mask[0], colors, lines, f"{run}  t={t}", lim))
            res = env.step(action)
            if bool(res.done[0]):
                fg = res.final_obs.graph
                assert fg is not None
                frames.append(_frame(fg.x[0], fg.node_mask[0], colors, [], f"{run}  t={t + 1} (end)", lim))
                info["return"] = float(res.episode_return[0])
                if "win" in res.info:
                    info["win"] = float(res.info["win"][0])
                break
            obs = res.obs
    finally:
        env.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return {"gif": str(out), "frames": len(frames), **info}
