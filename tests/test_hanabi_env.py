"""Hanabi on the engine: the batched interface, and the colour symmetry checked against the engine.

The colour check plays a game and, in parallel, a game whose every card is
colour-permuted by ``g`` (dealt by the engine itself: :func:`deal_specific_card` lets the
engine draw until it deals the wanted card), mapping each move by ``K_g``; at every step
the permuted game's observations must equal ``L_g`` of the original's and its legal
moves ``K_g`` of the original's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("hanabi_learning_environment")
from hanabi_learning_environment import pyhanabi as ph

from eqmarl.envs.hanabi import (
    HanabiEnv,
    HanabiLayout,
    HanabiParams,
    deal_specific_card,
    engine_seed,
    hanabi_colour_symmetry,
    last_move,
)
from eqmarl.models.mlp import MLPEncoder
from eqmarl.models.policy import Policy
from eqmarl.symmetry.groups import make_group
from eqmarl.wrappers.eqc import EQC

# small tensors: one torch thread (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def random_legal(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``[E, A]`` uniformly random allowed actions."""
    flat = mask.float().reshape(-1, mask.shape[-1])
    return torch.multinomial(flat, 1, generator=gen).view(mask.shape[:-1])


def engine_obs(encoder, state, player: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array(encoder.encode(state.observation(player)), dtype=np.float32)


def engine_legal(game, state, n: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    m = np.zeros(n, dtype=bool)
    if not state.is_terminal():
        for mv in state.legal_moves():
            m[game.get_move_uid(mv)] = True
    return m


def deal_all(state) -> None:  # type: ignore[no-untyped-def]
    while state.cur_player() == ph.CHANCE_PLAYER_ID:
        state.deal_random_card()


# --------------------------------------------------------------------------- interface
@pytest.mark.parametrize(
    "kwargs, obs_dim, n_actions, agents",
    [
        ({}, 658, 21, 2),
        ({"preset": "small"}, 171, 12, 2),
        ({"preset": "very_small"}, 106, 11, 2),
        ({"colors": 3}, 426, 19, 2),
        ({"players": 3}, 956, 31, 3),
        (
            {"players": 4, "preset": "small", "hand_size": 3, "max_information_tokens": 5, "max_life_tokens": 2},
            None,
            None,
            4,
        ),
    ],
)
def test_shapes_and_masks(kwargs: dict, obs_dim: int | None, n_actions: int | None, agents: int) -> None:
    env = HanabiEnv(num_envs=3, seed=1, **kwargs)
    spec = env.spec
    if obs_dim is not None:
        assert (spec.obs_dim, spec.action_dim) == (obs_dim, n_actions)
    assert spec.n_agents == agents and spec.state_dim == agents * spec.obs_dim and spec.action_type == "discrete"
    obs = env.reset()
    assert obs.obs.shape == (3, agents, spec.obs_dim) and obs.obs.dtype == torch.float32
    assert obs.state.shape == (3, agents * spec.obs_dim)
    assert torch.equal(obs.state, obs.obs.reshape(3, -1))
    assert obs.action_mask is not None and obs.action_mask.shape == (3, agents, spec.action_dim)
    gen = torch.Generator().manual_seed(0)
    noop = spec.action_dim - 1
    for _ in range(6):
        mask = obs.action_mask
        cur = env.current_player()
        for e in range(3):
            for a in range(agents):
                if a == int(cur[e]):
                    assert not bool(mask[e, a, noop]) and int(mask[e, a].sum()) >= 1
                else:
                    assert bool(mask[e, a, noop]) and int(mask[e, a].sum()) == 1
        obs = env.step(random_legal(mask, gen)).obs


def test_matches_engine_step_by_step_with_autoreset_and_score() -> None:
    """Obs, masks, rewards, scores and autoreset equal an engine replay of the same games."""
    e_n, seed = 4, 7
    env = HanabiEnv(num_envs=e_n, preset="full", max_life_tokens=1, seed=seed)
    params = env.params
    games = [ph.HanabiGame(params.engine_config(engine_seed(seed, i))) for i in range(e_n)]
    encoder = ph.ObservationEncoder(games[0])
    states = [g.new_initial_state() for g in games]
    for s in states:
        deal_all(s)
    n_moves = env.layout.n_moves
    obs = env.reset()
    gen = torch.Generator().manual_seed(1)
    returns = np.zeros(e_n)
    finished = 0
    for _ in range(120):
        for e in range(e_n):
            for p in range(params.players):
                assert np.array_equal(obs.obs[e, p].numpy(), engine_obs(encoder, states[e], p))
            cur = states[e].cur_player()
            assert int(env.current_player()[e]) == cur
            assert np.array_equal(obs.action_mask[e, cur, :n_moves].numpy(), engine_legal(games[e], states[e], n_moves))
        actions = random_legal(obs.action_mask, gen)
        res = env.step(actions)
        assert res.reward.shape == (e_n, params.players)
        for e in range(e_n):
            before = states[e].score()
            states[e].apply_move(games[e].get_move(int(actions[e, states[e].cur_player()])))
            deal_all(states[e])
            assert float(res.reward[e, 0]) == states[e].score() - before
            assert bool((res.reward[e] == res.reward[e, 0]).all())
            returns[e] += float(res.reward[e, 0])
            for p in range(params.players):
                assert np.array_equal(res.final_obs.obs[e, p].numpy(), engine_obs(encoder, states[e], p))
            assert bool(res.terminated[e]) == states[e].is_terminal()
            if states[e].is_terminal():
                finished += 1
                assert float(res.info["score"][e]) == states[e].score() == returns[e]
                assert float(res.episode_return[e]) == returns[e]
                assert float(res.info["bombed"][e]) == float(states[e].life_tokens() == 0)
                assert int(res.episode_length[e]) > 0
                assert bool(res.final_obs.action_mask[e, :, -1].all())  # terminal: only the no-op
                returns[e] = 0.0
                states[e] = games[e].new_initial_state()  # autoreset: next game, same engine
                deal_all(states[e])
            else:
                assert np.isnan(float(res.info["score"][e])) and np.isnan(float(res.episode_return[e]))
                assert int(res.episode_length[e]) == 0
                assert torch.equal(res.obs.obs[e], res.final_obs.obs[e])
        obs = res.obs
    assert finished >= 4


def test_reproducible_truncation_and_errors() -> None:
    a, b = HanabiEnv(2, seed=3), HanabiEnv(2, seed=3)
    assert torch.equal(a.reset().obs, b.reset().obs)
    assert not torch.equal(a.reset(seed=4).obs, b.reset(seed=5).obs)
    env = HanabiEnv(2, preset="small", episode_limit=3, seed=0)
    obs = env.reset()
    gen = torch.Generator().manual_seed(0)
    for _t in range(3):
        res = env.step(random_legal(obs.action_mask, gen))
        obs = res.obs
    assert bool((res.truncated | res.terminated).all())
    bad = torch.full((2, 2), env.spec.action_dim - 1)  # the current player may not pass
    with pytest.raises(ValueError, match="not legal"):
        env.step(bad)
    for kwargs, key in [
        ({"colors": 6}, "colors"),
        ({"players": 6}, "players"),
        ({"preset": "huge"}, "preset"),
        ({"hand_size": 0}, "hand_size"),
        ({"preset": "very_small", "hand_size": 9}, "hand_size"),
        ({"observation_type": "seer"}, "observation_type"),
    ]:
        with pytest.raises(ValueError, match=key):
            HanabiEnv(1, **kwargs)


@pytest.mark.parametrize("players", [2, 3, 4, 5])
@pytest.mark.parametrize(
    "colors, ranks, hand, info, life, obs_type",
    [
        (5, 5, None, 8, 3, "card_knowledge"),
        (3, 5, 4, 5, 2, "card_knowledge"),
        (2, 3, 2, 3, 1, "minimal"),
        (2, 1, 1, 1, 1, "card_knowledge"),
    ],
)
def test_layout_matches_engine(
    players: int, colors: int, ranks: int, hand: int | None, info: int, life: int, obs_type: str
) -> None:
    params = HanabiParams.from_preset("full", players, colors, ranks, hand, info, life, obs_type)
    layout = HanabiLayout(params)
    game = ph.HanabiGame(params.engine_config(0))
    assert ph.ObservationEncoder(game).shape() == [layout.obs_dim]
    assert game.max_moves() == layout.n_moves
    assert params.max_deck_size == sum(game.num_cards(c, r) for c in range(colors) for r in range(ranks))
    for t in range(1, players):
        for c in range(colors):
            mv = game.get_move(layout.colour_hint_uid(t, c))
            assert mv.type() == ph.HanabiMoveType.REVEAL_COLOR and (mv.target_offset(), mv.color()) == (t, c)
    assert sum(layout.describe()[s.name] for s in layout.sections) == layout.obs_dim


# ------------------------------------------------------------- colour symmetry vs engine
def play_permuted_pair(params: HanabiParams, perm: torch.Tensor, seed: int, obs_perm=None) -> dict:  # type: ignore[no-untyped-def]
    """Play a game and its colour-permuted twin; assert L_g / K_g at every step."""
    layout = HanabiLayout(params)
    l_fwd = (layout.obs_permutation(perm) if obs_perm is None else obs_perm).numpy()
    k_fwd = layout.action_permutation(perm).numpy()
    assert k_fwd[layout.noop] == layout.noop
    g1 = ph.HanabiGame(params.engine_config(seed))
    g2 = ph.HanabiGame(params.engine_config(seed + 1000))
    enc = ph.ObservationEncoder(g1)
    s1, s2 = g1.new_initial_state(), g2.new_initial_state()
    rng = np.random.default_rng(seed)
    n = layout.n_moves
    steps, hints, plays = 0, 0, 0
    while True:
        while s1.cur_player() == ph.CHANCE_PLAYER_ID:
            s1.deal_random_card()
            card = last_move(s1)
            s2 = deal_specific_card(s2, int(perm[card.color()]), card.rank())
        assert s1.cur_player() == s2.cur_player()
        for p in range(params.players):
            o1, o2 = engine_obs(enc, s1, p), engine_obs(enc, s2, p)
            moved = np.empty_like(o1)
            moved[l_fwd] = o1  # (L_g x)[L_g(j)] = x[j]
            if not np.array_equal(o2, moved):
                raise AssertionError(f"step {steps}, player {p}: obs differs at {np.flatnonzero(o2 != moved)[:10]}")
        m1, m2 = engine_legal(g1, s1, n), engine_legal(g2, s2, n)
        assert np.array_equal(m2, m1[np.argsort(k_fwd[:n])]), f"step {steps}: legal moves differ"
        if s1.is_terminal():
            break
        legal = np.flatnonzero(m1)
        hand = s1.player_hands()[s1.cur_player()]
        h = params.hand_size
        good = [h + i for i, c in enumerate(hand) if s1.card_playable_on_fireworks(c.color(), c.rank()) and m1[h + i]]
        other = [u for u in legal if not h <= u < 2 * h]
        u = rng.random()
        if good and u < 0.85:
            move = int(rng.choice(good))  # a sensible play: fireworks grow, games run long
        elif other and u < 0.97:
            move = int(rng.choice(other))  # hints and discards
        else:
            move = int(rng.choice(legal))  # anything, including failed plays
        hints += int(move >= 2 * h)
        plays += int(h <= move < 2 * h)
        s1.apply_move(g1.get_move(move))
        s2.apply_move(g2.get_move(int(k_fwd[move])))
        steps += 1
    assert s1.score() == s2.score()
    return {"steps": steps, "score": s1.score(), "deck": s1.deck_size(), "hints": hints, "plays": plays}


def test_colour_symmetry_matches_engine_full_game() -> None:
    params = HanabiParams.from_preset("full")
    s5 = make_group("S5")
    gen = torch.Generator().manual_seed(0)
    idx = s5.sample(4, gen).tolist()
    idx[0] = int(s5.index_of(torch.tensor([[1, 2, 0, 4, 3]]))[0])  # a 3-cycle times a swap
    stats = [play_permuted_pair(params, s5.elements[i], seed=10 + k) for k, i in enumerate(idx)]
    # the games covered the whole encoding: long games, fireworks built, deck run out, hints
    assert max(s["score"] for s in stats) >= 10
    assert any(s["deck"] == 0 for s in stats)
    assert sum(s["hints"] for s in stats) >= 20 and sum(s["plays"] for s in stats) >= 20


def test_colour_symmetry_matches_engine_three_colours() -> None:
    params = HanabiParams.from_preset("full", colors=3, hand_size=4, max_information_tokens=6)
    s3 = make_group("S3")
    stats = [play_permuted_pair(params, s3.elements[i], seed=20 + i) for i in range(s3.order)]
    assert any(s["deck"] == 0 for s in stats)
    # three players: hints to two targets, seats relative to the observer
    p3 = HanabiParams.from_preset("small", players=3, colors=3)
    play_permuted_pair(p3, torch.tensor([2, 0, 1]), seed=5)
    # the minimal encoding (no card-knowledge section)
    minimal = HanabiParams.from_preset("small", colors=3, observation_type="minimal")
    play_permuted_pair(minimal, torch.tensor([1, 2, 0]), seed=6)


def test_wrong_colour_action_is_caught() -> None:
    """The engine check fails for a wrong L_g (here: the inverse of a 3-cycle)."""
    params = HanabiParams.from_preset("full")
    perm = torch.tensor([1, 2, 0, 3, 4])
    wrong = HanabiLayout(params).obs_permutation(torch.argsort(perm))
    with pytest.raises(AssertionError, match="obs differs"):
        play_permuted_pair(params, perm, seed=3, obs_perm=wrong)
    # leaving one colour-indexed part out (the discard pile) is caught as well
    layout = HanabiLayout(params)
    partial = torch.arange(layout.obs_dim)
    from eqmarl.symmetry.actions import section_permutation

    for off, n, block in layout.colour_blocks:
        if off != layout.section("discards").offset:
            section_permutation(perm, layout.obs_dim, off, n, block, out=partial)
    with pytest.raises(AssertionError, match="obs differs"):
        for seed in range(5):
            play_permuted_pair(params, perm, seed=seed, obs_perm=partial)


def test_eqc_on_hanabi_observations_is_equivariant() -> None:
    env = HanabiEnv(num_envs=4, preset="full", colors=3, seed=2)
    obs = env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        obs = env.step(random_legal(obs.action_mask, gen)).obs
    action = env.symmetry("S3")
    assert action.order == 6 and action.n_actions == env.spec.action_dim
    torch.manual_seed(0)
    spec = env.spec
    pol = Policy(MLPEncoder(spec.obs_dim, 32, 1), MLPEncoder(spec.state_dim, 32, 1, source="state", n_agents=2), spec)
    with torch.no_grad():
        pol.head.logits.weight.normal_(0.0, 1.0)
    pol = pol.double()
    obs64 = obs.map(lambda t: t.double() if t.is_floating_point() else t)
    eqc = EQC(pol, action)
    with torch.no_grad():
        p0, v0 = eqc.distribution(obs64).logits.exp(), eqc.value(obs64)
        for g in range(action.order):
            moved = action.observation(obs64, g)
            assert torch.allclose(eqc.distribution(moved).logits.exp(), action.mask(p0, g), atol=1e-12)
            assert torch.allclose(eqc.value(moved), v0, atol=1e-12)
    # full game, C5 / D10 / S5 actions are valid group actions (homomorphism checked)
    layout = HanabiLayout(HanabiParams.from_preset("full"))
    for name in ("C5", "D10", "S5"):
        act = hanabi_colour_symmetry(layout, name)
        assert act.order == make_group(name).order
        assert int((act.action_perm != torch.arange(act.n_actions)).any(0).sum()) == 5  # only colour hints move
