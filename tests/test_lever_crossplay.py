"""Zero-shot coordination on the lever game: EQC in training, self-play/cross-play evaluation.

A few lever runs (50 PPO iterations, about a second each) are trained once for the module:

* plain self-play seeds each settle on one of the nine 1.0-levers, and (for the seeds
  used here, measured) on different ones, so they cannot coordinate with each other;
* with ``model.eqc=C9`` (and ``model.orbit_init=C9``) every seed converges to the 0.9
  lever, so cross-play equals self-play.

The cross-play tool is checked on these checkpoints: matrix, SP/XP summaries, test-time
EQC on plain checkpoints, the JSON/CSV/PNG outputs and the ``eqmarl xplay`` CLI.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from eqmarl.cli import main as cli_main
from eqmarl.envs.lever import LeverGame
from eqmarl.eval.crossplay import crossplay_returns, evaluate_crossplay, summarize
from eqmarl.eval.runs import load_agent, load_run
from eqmarl.models.policy import Policy
from eqmarl.models.registry import make_policy
from eqmarl.symmetry.actions import orbit_sizes
from eqmarl.train.trainer import Trainer
from eqmarl.wrappers.eqc import EQC
from tests.conftest import compose

# 50 iterations of 64 one-step games; converges in about a second
FAST = [
    "experiment=lever",
    "logger.wandb_mode=disabled",
    "train.total_env_steps=3200",
    "train.num_envs=64",
    "algo.rollout_steps=1",
    "algo.epochs=2",
    "algo.lr=1e-2",
]
PLAIN_SEEDS = (0, 2)  # measured: they settle on different 1.0-levers (5 and 3)
EQC_ARGS = ["model.eqc=C9", "model.orbit_init=C9"]


# small tensors: one torch thread (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def train(run_dir: Path, seed: int, extra: list[str]) -> Trainer:
    torch.set_num_threads(1)
    cfg = compose([*FAST, f"seed={seed}", *extra])
    tr = Trainer(cfg, run_dir)
    while not tr.done:
        tr.update(tr.rollout())
        tr.iteration += 1
    tr.save()
    return tr


def lever_probs(policy: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return policy.distribution(LeverGame(1).reset()).logits.exp()[0, 0]  # type: ignore[operator]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("lever")
    out: dict[str, list[Path]] = {"plain": [], "eqc": []}
    for seed in PLAIN_SEEDS:
        train(root / f"plain_s{seed}", seed, [])
        out["plain"].append(root / f"plain_s{seed}")
    for seed in (0, 1):
        train(root / f"eqc_s{seed}", seed, EQC_ARGS)
        out["eqc"].append(root / f"eqc_s{seed}")
    return out


def test_eqc_training_converges_to_the_09_lever(runs: dict[str, list[Path]]) -> None:
    env = LeverGame(1)
    for run in runs["eqc"]:
        ckpt = load_run(run)
        assert ckpt.model.eqc == "C9"
        # the checkpoint holds the plain policy: it loads without the wrapper
        plain = make_policy(ckpt.model, env.spec, centralized_critic=False)
        plain.load_state_dict(ckpt.state)
        p = lever_probs(load_agent(ckpt, env).module)
        assert float(p[9]) > 0.95, p


def test_plain_seeds_break_the_symmetry_differently(runs: dict[str, list[Path]]) -> None:
    env = LeverGame(1)
    choices = []
    for run in runs["plain"]:
        p = lever_probs(load_agent(load_run(run), env).module)
        assert float(p.max()) > 0.95 and int(p.argmax()) != 9, p
        choices.append(int(p.argmax()))
    assert len(set(choices)) == len(choices)


def test_crossplay_matrix_and_test_time_eqc(runs: dict[str, list[Path]]) -> None:
    plain = [load_run(r) for r in runs["plain"]]
    ret = crossplay_returns(plain, games=400, seed=1)
    assert ret.shape == (2, 2, 400)
    s = summarize(ret)
    assert s["sp"]["mean"] > 0.95 and s["xp"]["mean"] < 0.05
    assert s["sp"]["pairings"] == 2 and s["xp"]["pairings"] == 2
    # test-time EQC over C9 makes each plain policy uniform over the nine 1.0-levers
    sym = summarize(crossplay_returns(plain, games=4000, test_time_eqc="C9", seed=1))
    assert abs(sym["sp"]["mean"] - 1 / 9) < 0.03 and abs(sym["xp"]["mean"] - 1 / 9) < 0.03
    eqc = summarize(crossplay_returns([load_run(r) for r in runs["eqc"]], games=400, seed=1))
    assert eqc["sp"]["mean"] > 0.85 and eqc["xp"]["mean"] > 0.85


def test_test_time_eqc_wraps_a_plain_checkpoint(runs: dict[str, list[Path]]) -> None:
    env = LeverGame(1)
    ckpt = load_run(runs["plain"][0])
    pol = load_agent(ckpt, env, test_time_eqc="C9").module
    assert isinstance(pol, EQC) and isinstance(pol.policy, Policy)
    p = lever_probs(pol)
    assert torch.allclose(p[:9], p[:1].expand(9), atol=1e-6)
    assert orbit_sizes(env.symmetry("C9")).tolist() == [9] * 9 + [1]


def test_xplay_cli_writes_table_json_csv_png(
    runs: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "xp"
    rc = cli_main(["xplay", *map(str, runs["plain"]), "--games", "200", "--eqc", "C9", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "self-play" in text and "cross-play" in text and "test-time EQC over C9" in text
    result = json.loads((out / "crossplay.json").read_text())
    assert set(result["variants"]) == {"raw", "eqc"} and result["games"] == 200
    assert result["variants"]["raw"]["sp"]["mean"] > 0.95
    rows = list(csv.DictReader((out / "crossplay.csv").open()))
    assert len(rows) == 2 * 4 and {r["kind"] for r in rows} == {"sp", "xp"}
    assert (out / "crossplay.png").stat().st_size > 2000
    # the same through the library entry point, from the sweep's parent directory
    res = evaluate_crossplay([runs["plain"][0].parent], games=50)
    assert len(res["runs"]) == 4
    assert cli_main(["xplay", str(tmp_path / "nothing-here"), "--games", "2"]) == 2
