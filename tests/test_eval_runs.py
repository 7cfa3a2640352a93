"""``eqmarl eval``, ``render`` and ``xplay`` act with the policy a run trained and evaluated.

A run trained through EQC (``model.eqc``) saves the plain policy; every command must wrap
it again as the trainer did (``eqmarl.build.make_agent``) and play its episodes with the
same loop (``eqmarl.core.episodes.run_episodes``).  So, with the run's evaluation seed
(``seed + 777``) and its number of episodes, ``eqmarl eval`` repeats the run's last
``eval_return``/``eval_length`` in ``metrics.csv``, greedy self-play in ``eqmarl xplay``
gives the same return, and ``eqmarl render`` draws an episode whose return is that of a
one-episode ``eqmarl eval``.  Tiny runs through the real CLI (``python launch.py``).
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import pytest
import torch

from eqmarl.cli import main as cli_main
from eqmarl.core.episodes import EpisodeStats, run_episodes
from eqmarl.envs.lever import LeverGame
from eqmarl.train.logger import _fmt
from tests.conftest import TINY, launch_cmd, run_ok

EVAL_SEED = "777"  # the trainer resets its evaluation envs with seed + 777 (seed=0 here)
EPISODES = "4"  # TINY's train.eval_episodes

RUNS = {
    # one-step coordination game, symmetrized over the nine equal levers
    "lever": ["env=lever", "model=mlp", "model.eqc=C9"],
    # two-player Hanabi with three colours, symmetrized over the colours: without EQC at
    # test time the deterministic episodes end at other lengths (measured, seeds 0-2)
    "hanabi_3c": ["env=hanabi_3c", "model=mlp", "model.eqc=C3", "train.total_env_steps=400"],
}


def _last_row(run: Path) -> dict[str, str]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))[-1]


def _eval(run: Path, out: Path, episodes: str) -> dict:
    rc = cli_main(["eval", str(run), "--seed", EVAL_SEED, "--episodes", episodes, "--out", str(out)])
    assert rc == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", list(RUNS))
def test_eval_render_and_xplay_repeat_the_runs_evaluation(
    name: str, tmp_path: Path, clean_env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    run_ok(launch_cmd(*TINY, *RUNS[name], "seed=0", f"hydra.run.dir={run}"), clean_env, timeout=600)
    last = _last_row(run)
    assert last["eval_return"] != ""

    result = _eval(run, tmp_path / "eval.json", EPISODES)
    assert result["episodes"] == int(EPISODES)
    assert _fmt(result["return_mean"]) == last["eval_return"]
    assert _fmt(result["return_se"]) == last["eval_return_se"]
    assert _fmt(result["length_mean"]) == last["eval_length"]

    xp = tmp_path / "xp"
    rc = cli_main(["xplay", str(run), "--games", EPISODES, "--seed", EVAL_SEED, "--greedy", "--out", str(xp)])
    assert rc == 0
    assert _fmt(json.loads((xp / "crossplay.json").read_text())["variants"]["raw"]["sp"]["mean"]) == last["eval_return"]

    capsys.readouterr()
    gif = tmp_path / "episode.gif"
    assert cli_main(["render", str(run), "--seed", EVAL_SEED, "--out", str(gif)]) == 0
    rendered = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    one = _eval(run, tmp_path / "eval1.json", "1")
    assert rendered["return"] == one["return_mean"]
    assert rendered["frames"] >= 2 and gif.stat().st_size > 0


def test_run_episodes_records_the_first_episode_of_each_env() -> None:
    env = LeverGame(3)
    seen: list[int] = []
    # agents agree in env 0 and 2 (lever 9 pays 0.9, lever 1 pays 1.0), not in env 1
    action = torch.tensor([[9, 9], [1, 2], [1, 1]])
    stats = run_episodes(env, lambda obs: action, seed=0, on_step=lambda t, o, a, r: seen.append(t))
    assert seen == [0]  # every episode lasts one step
    assert torch.allclose(stats.returns, torch.tensor([0.9, 0.0, 1.0]))
    assert stats.lengths.tolist() == [1.0, 1.0, 1.0] and stats.wins is None
    s = stats.summary()
    assert set(s) == {"eval_return", "eval_return_se", "eval_length"}
    assert s["eval_return"] == pytest.approx(1.9 / 3) and s["eval_length"] == 1.0


def test_episode_stats_summary_with_wins_and_unfinished_envs() -> None:
    nan = float("nan")
    stats = EpisodeStats(
        returns=torch.tensor([1.0, nan, 3.0]), lengths=torch.tensor([4.0, 0.0, 2.0]), wins=torch.tensor([1.0, nan, 0.0])
    )
    assert stats.finished.tolist() == [True, False, True]
    s = stats.summary()
    assert s["eval_return"] == 2.0 and s["eval_return_se"] == pytest.approx(1.0)
    assert s["eval_length"] == 2.0  # unfinished envs count as length 0, as the trainer always logged
    assert s["eval_win_rate"] == 0.5 and s["eval_win_rate_se"] == pytest.approx(0.5)
