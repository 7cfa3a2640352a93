"""The batched torch Hanabi backend against the engine: same deals, same moves -> same everything.

Games are played on the engine (hanabi-learning-environment) with random legal moves;
the cards the engine dealt give each game's deck order.  The fast backend then replays
all games at once from those decks with the same moves, and at every step its
observations (every seat), legal-move masks, rewards, terminations and final scores
must equal the engine's.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

pytest.importorskip("hanabi_learning_environment")
from hanabi_learning_environment import pyhanabi as ph

from eqmarl.envs.hanabi import HanabiEnv, HanabiLayout, HanabiParams, card_count, last_move
from eqmarl.envs.hanabi_fast import FastHanabiEnv

# small tensors: one torch thread (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def play_engine_games(params: HanabiParams, n_games: int, seed: int) -> list[dict]:
    """Random-legal-move games on the engine: per step obs [P, D], legal [n_moves], reward; deck order."""
    game = ph.HanabiGame(params.engine_config(seed=seed))
    enc = ph.ObservationEncoder(game)
    layout = HanabiLayout(params)
    rng = random.Random(seed)
    games = []
    for _ in range(n_games):
        state = game.new_initial_state()
        dealt: list[int] = []

        def deal(state=state, dealt=dealt) -> None:
            while state.cur_player() == ph.CHANCE_PLAYER_ID:
                state.deal_random_card()
                mv = last_move(state)
                dealt.append(mv.color() * params.ranks + mv.rank())

        def snapshot(state=state) -> tuple[np.ndarray, np.ndarray]:
            obs = np.stack(
                [np.array(enc.encode(state.observation(a)), dtype=np.float32) for a in range(params.players)]
            )
            legal = np.zeros(layout.n_moves, dtype=bool)
            if not state.is_terminal():
                for mv in state.legal_moves():
                    legal[game.get_move_uid(mv)] = True
            return obs, legal

        deal()
        steps = [snapshot()]
        moves, rewards = [], []
        while not state.is_terminal():
            legal_moves = state.legal_moves()
            mv = legal_moves[rng.randrange(len(legal_moves))]
            before = state.score()
            moves.append(game.get_move_uid(mv))
            state.apply_move(mv)
            deal()
            rewards.append(state.score() - before)
            steps.append(snapshot())
        remaining = [
            c * params.ranks + r
            for c in range(params.colors)
            for r in range(params.ranks)
            for _ in range(card_count(r, params.ranks))
        ]
        for c in dealt:
            remaining.remove(c)
        games.append(
            {
                "deck": dealt + remaining,
                "moves": moves,
                "rewards": rewards,
                "steps": steps,
                "score": state.score(),
                "cur": [],
                "players": params.players,
            }
        )
    return games


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # full: 5 colours, 2 players
        {"colors": 3, "hand_size": 3, "max_information_tokens": 5},  # the 3-colour training variant
        {"preset": "small"},
        {"players": 3, "max_life_tokens": 1},
        {"preset": "small", "max_life_tokens": 30},  # games end when the deck runs out
        {"ranks": 1, "colors": 2, "hand_size": 2},  # games end with complete fireworks
    ],
)
def test_fast_backend_matches_engine(kwargs: dict, n_games: int = 12, seed: int = 3) -> None:
    env = FastHanabiEnv(num_envs=n_games, seed=0, **kwargs)
    params, noop = env.params, env.layout.noop
    games = play_engine_games(params, n_games, seed=seed)
    obs = env.reset(decks=torch.tensor([g["deck"] for g in games]))
    for g, game in enumerate(games):
        o0, legal0 = game["steps"][0]
        assert torch.equal(obs.obs[g], torch.from_numpy(o0)), f"game {g}: first observation"
        cur = 0
        assert torch.equal(obs.action_mask[g, cur, :noop], torch.from_numpy(legal0))
    longest = max(len(g["moves"]) for g in games)
    cur = torch.zeros(n_games, dtype=torch.long)
    for t in range(longest):
        actions = torch.full((n_games, params.players), noop, dtype=torch.long)
        live = []
        for g, game in enumerate(games):
            if t < len(game["moves"]):
                actions[g, cur[g]] = game["moves"][t]
                live.append(g)
            else:  # finished: keep the fast env busy with any legal move of its new game
                actions[g, cur[g]] = int(obs.action_mask[g, cur[g]].nonzero()[0, 0])
        res = env.step(actions)
        for g in live:
            game = games[g]
            o, legal = game["steps"][t + 1]
            ended = t + 1 == len(game["moves"])
            view = res.final_obs
            assert torch.equal(view.obs[g], torch.from_numpy(o)), f"game {g}, step {t}: observation"
            nxt = (cur[g] + 1) % params.players
            if not ended:
                assert torch.equal(view.action_mask[g, nxt, :noop], torch.from_numpy(legal)), f"game {g}, step {t}"
                assert bool(view.action_mask[g, :, noop].sum() == params.players - 1)
            else:
                assert not bool(view.action_mask[g, :, :noop].any())
            assert float(res.reward[g, 0]) == game["rewards"][t], f"game {g}, step {t}: reward"
            assert bool(res.terminated[g]) == ended
            if ended:
                assert float(res.info["score"][g]) == game["score"] == float(res.episode_return[g])
                assert int(res.episode_length[g]) == len(game["moves"])
        cur = torch.where(res.done, torch.zeros_like(cur), (cur + 1) % params.players)
        obs = res.obs


def test_interface_matches_engine_env() -> None:
    fast = FastHanabiEnv(num_envs=4, colors=3, seed=1)
    slow = HanabiEnv(num_envs=4, colors=3, seed=1)
    assert fast.spec == slow.spec
    o = fast.reset(seed=2)
    assert o.obs.shape == (4, 2, fast.spec.obs_dim) and o.state.shape == (4, fast.spec.state_dim)
    assert o.action_mask is not None and o.action_mask.dtype == torch.bool
    sym = fast.symmetry("S3")
    assert sym.order == 6 and torch.equal(sym.obs_perm, slow.symmetry("S3").obs_perm)
    with pytest.raises(ValueError, match="not legal"):
        fast.step(torch.full((4, 2), fast.layout.noop))
    with pytest.raises(ValueError, match="random_start_player"):
        FastHanabiEnv(num_envs=1, random_start_player=True)


def test_random_games_autoreset_and_scores() -> None:
    env = FastHanabiEnv(num_envs=32, seed=0)
    gen = torch.Generator().manual_seed(0)
    obs = env.reset(seed=0)
    scores = []
    for _ in range(200):
        m = obs.action_mask.float().reshape(-1, obs.action_mask.shape[-1])
        res = env.step(torch.multinomial(m, 1, generator=gen).view(32, -1))
        s = res.info["score"]
        scores.append(s[~torch.isnan(s)])
        obs = res.obs
    s = torch.cat(scores)
    assert s.numel() > 32 and bool((s >= 0).all()) and bool((s <= 25).all())
