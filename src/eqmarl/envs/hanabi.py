"""Hanabi on the standard engine (``hanabi-learning-environment``) behind the batched interface.

Backend: one engine ``HanabiState`` per env, stepped in a Python loop (the engine has
no batched API); observations are the engine's canonical vectorized encoding.  Install
the engine with ``CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install hanabi-learning-environment``
(or ``pip install 'eqmarl[hanabi]'`` with that variable set).

Turn-based game on simultaneous ``[E, A]`` actions: agent ``a`` is seat ``a``.  Every
step every agent submits an action, but only the current player's is applied.  The
action space is the engine's ``max_moves()`` moves (by move uid: discards, plays,
colour hints per target, rank hints per target) plus one **no-op** (the last index,
``spec.action_dim - 1``).  The current player's mask allows exactly its legal moves
(never the no-op); every other agent's mask allows only the no-op, so its action has
probability 1 and contributes nothing to a policy gradient.  The current player's
action must be legal (else :class:`ValueError`); the other agents' actions are ignored.

Observations: ``obs [E, A, obs_dim]``, row ``a`` is agent ``a``'s own canonical
observation of the current state (its own cards hidden; seats relative to itself).
``state [E, A * obs_dim]`` is the agents' observations concatenated in seat order.
Reward ``[E, A]`` (shared): the change of the engine's score this step, so the return
of an episode equals its final score (the engine scores 0 when the last life is lost,
so that step's reward is minus the fireworks built).  ``info['score']`` is the final
score of episodes that ended this step (nan elsewhere), ``info['bombed']`` 1.0 where
the game ended by losing all lives.

Variants: ``preset`` (``full``: 5 colours, 5 ranks, 8 information and 3 life tokens;
``small``: 2 colours, hand 2, 3 information tokens, 1 life; ``very_small``: 1 colour,
hand 2, 3/1 tokens; as the engine's Hanabi-Full/-Small/-Very-Small) with any of
``colors, ranks, hand_size, max_information_tokens, max_life_tokens`` overridden;
2-5 players.

Colour symmetry: :class:`HanabiLayout` derives the sections of the canonical encoding
from the game parameters (as the engine's ``canonical_encoders.cc`` lays them out) and
:func:`hanabi_colour_symmetry` turns a permutation group on the colours into the
observation permutation ``L_g`` and the action permutation ``K_g`` (only colour hints
move).  Tests check both against the engine on colour-permuted games.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eqmarl.core.env import EnvSpec, Observation, StepResult
from eqmarl.core.errors import InvalidOption
from eqmarl.core.footprint import EnvFootprint, MiB
from eqmarl.symmetry.actions import GroupAction, section_permutation
from eqmarl.symmetry.groups import GroupError, PermutationGroup, make_group

PRESETS: dict[str, dict[str, int]] = {
    "full": {"colors": 5, "ranks": 5, "max_information_tokens": 8, "max_life_tokens": 3},
    "small": {"colors": 2, "ranks": 5, "hand_size": 2, "max_information_tokens": 3, "max_life_tokens": 1},
    "very_small": {"colors": 1, "ranks": 5, "hand_size": 2, "max_information_tokens": 3, "max_life_tokens": 1},
}
OBSERVATION_TYPES = {"minimal": 0, "card_knowledge": 1}
COLOR_CHARS = "RYGWB"
# env.backend: engine (HanabiEnv, the engine's games in a Python loop) | fast
# (eqmarl.envs.hanabi_fast.FastHanabiEnv, the same game as batched torch operations)
BACKENDS = ("engine", "fast")


def check_backend(backend: str, random_start_player: bool) -> None:
    """Refuse an unknown backend, and a random first player on ``fast`` (seat 0 starts there).

    Raises:
        InvalidOption: naming ``env.backend`` or ``env.random_start_player``.
    """
    if backend not in BACKENDS:
        raise InvalidOption("env.backend", backend, ", ".join(BACKENDS))
    if backend == "fast" and random_start_player:
        raise InvalidOption("env.random_start_player", True, "false with env.backend=fast (seat 0 starts)")


def _import_engine() -> Any:
    try:
        from hanabi_learning_environment import pyhanabi
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "env=hanabi needs the Hanabi engine: CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install "
            "hanabi-learning-environment (or pick another env, e.g. env=lever)"
        ) from e
    if not (pyhanabi.cdef_loaded() and pyhanabi.lib_loaded()):  # pragma: no cover
        raise ImportError("hanabi-learning-environment is installed but its C library did not load")
    return pyhanabi


def default_hand_size(players: int) -> int:
    """The engine's default hand size: 5 cards for 2-3 players, 4 for 4-5."""
    return 5 if players < 4 else 4


def card_count(rank: int, ranks: int) -> int:
    """Copies of each card of a colour in the engine's deck: 3 of the lowest rank,
    1 of the highest, 2 of the others."""
    if rank == 0:
        return 3
    return 1 if rank == ranks - 1 else 2


@dataclass(frozen=True)
class HanabiParams:
    """A Hanabi variant (the engine's game parameters).

    Attributes:
        players: 2..5 seats.
        colors: 1..5 suits (R, Y, G, W, B in order).
        ranks: 1..5 ranks per colour.
        hand_size: cards per hand.
        max_information_tokens: initial (and maximum) hint tokens.
        max_life_tokens: initial life tokens (mistakes allowed).
        observation_type: ``card_knowledge`` (the canonical encoding with hint memory) or ``minimal``.
    """

    players: int = 2
    colors: int = 5
    ranks: int = 5
    hand_size: int = 5
    max_information_tokens: int = 8
    max_life_tokens: int = 3
    observation_type: str = "card_knowledge"

    @staticmethod
    def from_preset(
        preset: str = "full",
        players: int = 2,
        colors: int | None = None,
        ranks: int | None = None,
        hand_size: int | None = None,
        max_information_tokens: int | None = None,
        max_life_tokens: int | None = None,
        observation_type: str = "card_knowledge",
    ) -> HanabiParams:
        """A preset (``full``, ``small``, ``very_small``) with the given values overridden, validated."""
        if preset not in PRESETS:
            raise InvalidOption("env.preset", preset, ", ".join(PRESETS))
        p = dict(PRESETS[preset])
        p.setdefault("hand_size", default_hand_size(players))
        for key, val in (
            ("colors", colors),
            ("ranks", ranks),
            ("hand_size", hand_size),
            ("max_information_tokens", max_information_tokens),
            ("max_life_tokens", max_life_tokens),
        ):
            if val is not None:
                p[key] = int(val)
        params = HanabiParams(players=players, observation_type=observation_type, **p)
        params.validate()
        return params

    @property
    def max_deck_size(self) -> int:
        """Cards in the full deck."""
        return self.colors * sum(card_count(r, self.ranks) for r in range(self.ranks))

    def validate(self) -> None:
        """Refuse values the engine would reject (abort on).

        Raises:
            InvalidOption: naming the ``env.`` key and the allowed values.
        """
        checks = [
            ("players", self.players, 2, 5),
            ("colors", self.colors, 1, 5),
            ("ranks", self.ranks, 1, 5),
            ("hand_size", self.hand_size, 1, None),
            ("max_information_tokens", self.max_information_tokens, 1, None),
            ("max_life_tokens", self.max_life_tokens, 1, None),
        ]
        for key, val, lo, hi in checks:
            if val < lo or (hi is not None and val > hi):
                raise InvalidOption(f"env.{key}", val, f"{lo}..{hi}" if hi is not None else f">= {lo}")
        if self.players * self.hand_size > self.max_deck_size:
            raise InvalidOption(
                "env.hand_size",
                self.hand_size,
                f"at most {self.max_deck_size // self.players} ({self.players} hands from the {self.max_deck_size} "
                f"cards of a {self.colors}-colour {self.ranks}-rank deck)",
            )
        if self.observation_type not in OBSERVATION_TYPES:
            raise InvalidOption("env.observation_type", self.observation_type, ", ".join(OBSERVATION_TYPES))

    def engine_config(self, seed: int, random_start_player: bool = False) -> dict[str, int | bool]:
        """Parameters for ``pyhanabi.HanabiGame``."""
        return {
            "players": self.players,
            "colors": self.colors,
            "ranks": self.ranks,
            "hand_size": self.hand_size,
            "max_information_tokens": self.max_information_tokens,
            "max_life_tokens": self.max_life_tokens,
            "observation_type": OBSERVATION_TYPES[self.observation_type],
            "seed": seed,
            "random_start_player": random_start_player,
        }


@dataclass(frozen=True)
class Section:
    """A named slice ``[offset, offset + length)`` of the canonical observation."""

    name: str
    offset: int
    length: int


class HanabiLayout:
    """Layout of the engine's canonical observation and move uids for a variant.

    Derived from the game parameters alone (no engine needed), following the
    engine's ``CanonicalObservationEncoder``: sections, in order,

    * ``hands``: the other ``P-1`` players' cards, ``H`` cards each, one-hot over
      ``C*R`` (colour-major: bit ``c*R + r``); then ``P`` "hand is missing a card" bits.
    * ``board``: deck size (thermometer, ``max_deck - P*H``); fireworks (``C`` blocks of
      ``R``, one-hot of the highest rank played); information tokens; life tokens.
    * ``discards``: ``C`` blocks (colour-major) of thermometers, ``count(r)`` bits per rank.
    * ``last_action``: acting player (``P``), move type (4), target (``P``), hinted colour
      (``C``), hinted rank (``R``), hint outcome (``H``), position (``H``), card played or
      discarded (``C*R``), scored / gained a token (2).
    * ``card_knowledge`` (unless ``minimal``): for each of ``P*H`` cards, plausible
      cards (``C*R``), colour revealed (``C``), rank revealed (``R``).

    Moves (uids): ``H`` discards, ``H`` plays, colour hints ``(target offset - 1) * C + c``,
    rank hints; then eqmarl's no-op.

    Args:
        params: the variant.
    """

    def __init__(self, params: HanabiParams) -> None:
        self.params = params
        p, c, r, h = params.players, params.colors, params.ranks, params.hand_size
        card = c * r
        lengths = [
            ("hands", (p - 1) * h * card + p),
            ("board", params.max_deck_size - p * h + card + params.max_information_tokens + params.max_life_tokens),
            ("discards", params.max_deck_size),
            ("last_action", p + 4 + p + c + r + h + h + card + 2),
        ]
        if params.observation_type != "minimal":
            lengths.append(("card_knowledge", p * h * (card + c + r)))
        self.sections: list[Section] = []
        off = 0
        for name, n in lengths:
            self.sections.append(Section(name, off, n))
            off += n
        self.obs_dim = off
        self.n_moves = 2 * h + (p - 1) * (c + r)
        self.n_actions = self.n_moves + 1
        self.noop = self.n_moves
        # (offset, number of colour blocks, block size) of every colour-indexed part
        s = {sec.name: sec.offset for sec in self.sections}
        blocks: list[tuple[int, int, int]] = [
            (s["hands"] + k * card, c, r) for k in range((p - 1) * h)
        ]  # visible cards
        fireworks = s["board"] + params.max_deck_size - p * h
        blocks.append((fireworks, c, r))
        blocks.append((s["discards"], c, params.max_deck_size // c))
        la = s["last_action"]
        blocks.append((la + p + 4 + p, c, 1))  # hinted colour
        blocks.append((la + p + 4 + p + c + r + 2 * h, c, r))  # card played/discarded
        if "card_knowledge" in s:
            for k in range(p * h):
                base = s["card_knowledge"] + k * (card + c + r)
                blocks.append((base, c, r))  # plausible cards
                blocks.append((base + card, c, 1))  # colour revealed
        self.colour_blocks = blocks

    def section(self, name: str) -> Section:
        """The section called ``name``."""
        for sec in self.sections:
            if sec.name == name:
                return sec
        raise KeyError(f"no section {name!r}; sections: {[s.name for s in self.sections]}")

    def colour_hint_uid(self, target_offset: int, colour: int) -> int:
        """Move uid of "hint colour to the player ``target_offset`` seats ahead"."""
        p = self.params
        return 2 * p.hand_size + (target_offset - 1) * p.colors + colour

    def obs_permutation(self, colour_perm: Tensor) -> Tensor:
        """``L_g``: forward permutation ``[obs_dim]`` of the observation for a colour permutation.

        Args:
            colour_perm: ``[colors]`` long, colour ``c`` becomes ``colour_perm[c]``.
        """
        out = torch.arange(self.obs_dim)
        for offset, n, block in self.colour_blocks:
            section_permutation(colour_perm, self.obs_dim, offset, n, block, out=out)
        return out

    def action_permutation(self, colour_perm: Tensor) -> Tensor:
        """``K_g``: forward permutation ``[n_actions]`` of the moves (+ no-op); colour hints move."""
        out = torch.arange(self.n_actions)
        for t in range(1, self.params.players):
            section_permutation(colour_perm, self.n_actions, self.colour_hint_uid(t, 0), self.params.colors, 1, out=out)
        return out

    def describe(self) -> dict[str, int]:
        """Section sizes (for reports): ``{name: length, ..., 'total': obs_dim}``."""
        d = {sec.name: sec.length for sec in self.sections}
        d["total"] = self.obs_dim
        return d


def hanabi_colour_symmetry(
    layout: HanabiLayout, group: str | PermutationGroup = "C5", n_agents: int | None = None
) -> GroupAction:
    """The colour-permutation action of ``group`` on observations, states and actions.

    Args:
        layout: the variant's layout.
        group: a :class:`PermutationGroup` on the variant's colours or its name
            (``C<k>``, ``D<2k>``, ``S<k>`` with ``k`` = number of colours).
        n_agents: agents whose observations make up the state (default: the players).

    Returns:
        :class:`GroupAction` with ``L_g`` from :meth:`HanabiLayout.obs_permutation`, the
        state permuted blockwise (one observation per agent) and ``K_g`` from
        :meth:`HanabiLayout.action_permutation`.
    """
    n_col = layout.params.colors
    grp = make_group(group, degree=n_col) if isinstance(group, str) else group
    if grp.degree != n_col:
        raise GroupError(f"the colour group must act on the {n_col} colours of this variant, got degree {grp.degree}")
    a = layout.params.players if n_agents is None else n_agents

    def state_map(perm: Tensor) -> Tensor:
        one = layout.obs_permutation(perm)
        return torch.cat([one + i * layout.obs_dim for i in range(a)])

    return GroupAction.from_point_maps(grp, layout.obs_permutation, layout.action_permutation, state_map)


# Memory per game, measured (benchmarks/memory_model.py, docs/results/memory_model.json:
# 2,000 games): ~6x (engine: its game and state objects, our buffers) and ~5x (fast: the
# batched tensors) the game's observations and masks; ~5 MB per batch.
HANABI_ENGINE_OBS_COPIES = 6
HANABI_FAST_OBS_COPIES = 5
HANABI_BATCH_BYTES = 5 * MiB


def hanabi_footprint(params: HanabiParams, backend: str) -> EnvFootprint:
    """The memory model of a Hanabi variant on ``backend`` (``engine`` | ``fast``); pure
    arithmetic, nothing is built."""
    layout = HanabiLayout(params)
    players, dim, actions = params.players, layout.obs_dim, layout.n_actions
    copies = HANABI_FAST_OBS_COPIES if backend == "fast" else HANABI_ENGINE_OBS_COPIES
    return EnvFootprint(
        agents=players,
        obs_dim=dim,
        state_dim=players * dim,
        mask_size=actions,
        per_env_bytes=copies * players * (4 * dim + actions),
        instance_bytes=HANABI_BATCH_BYTES,
        keys=("env.players", "env.colors", "env.ranks", "env.hand_size"),
        what=f"Hanabi {backend} ({players} players)",
    )


def engine_seed(seed: int, env_index: int) -> int:
    """Seed of env ``env_index``'s engine in a batch reset with ``seed`` (a 31-bit int)."""
    return (seed * 1_000_003 + env_index) % 2_147_483_647


def deal_specific_card(state: Any, color: int, rank: int, max_tries: int = 100_000) -> Any:
    """Deal card ``(color, rank)`` to the player the engine deals to next.

    The engine (0.0.4) only deals random cards, from the deck's remaining counts.  This
    copies the state and lets the engine deal until it draws the wanted card, so the
    returned state is one the engine itself produced.

    Args:
        state: a ``pyhanabi.HanabiState`` whose current player is the chance player.
        color: colour index of the card.
        rank: rank index of the card.
        max_tries: give up (ValueError) after this many draws (the card is not in the deck).

    Returns:
        A new ``pyhanabi.HanabiState`` with the card dealt.
    """
    ph = _import_engine()
    if state.cur_player() != ph.CHANCE_PLAYER_ID:
        raise ValueError("deal_specific_card: no card is due (the current player is not chance)")
    for _ in range(max_tries):
        trial = state.copy()
        trial.deal_random_card()
        dealt = last_move(trial)
        if dealt.color() == color and dealt.rank() == rank:
            return trial
    raise ValueError(f"card {COLOR_CHARS[color]}{rank + 1} was not dealt in {max_tries} draws; is it in the deck?")


def last_move(state: Any) -> Any:
    """The most recent move (``pyhanabi.HanabiMove``) in ``state``'s history (deals included)."""
    ph = _import_engine()
    n = ph.lib.StateLenMoveHistory(state._state)
    if n == 0:
        raise ValueError("the state has no history yet")
    item = ph.ffi.new("pyhanabi_history_item_t*")
    ph.lib.StateGetMoveHistory(state._state, n - 1, item)
    return ph.HanabiHistoryItem(item).move()


class HanabiBackend:
    """What both Hanabi backends share: their arguments, the variant's parameters and
    observation layout, and the episode limit.

    Args:
        num_envs: parallel games ``E``.
        random_start_player: the first player is drawn at random.
        episode_limit: truncate after this many turns (None: ``2 * deck + information
            tokens``, an upper bound on a game's length, so games are never cut).
        seed: base seed.
        device: torch device of the returned tensors.
        **variant: the game (:meth:`HanabiParams.from_preset`'s arguments: ``preset``,
            ``players``, ``colors``, ``ranks``, ``hand_size``, ``max_information_tokens``,
            ``max_life_tokens``, ``observation_type``).
    """

    def __init__(
        self,
        num_envs: int,
        random_start_player: bool = False,
        episode_limit: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        **variant: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs}; allowed: >= 1")
        self.params = HanabiParams.from_preset(**variant)
        self.layout = HanabiLayout(self.params)
        self.num_envs = num_envs
        self.seed = seed
        self.device = torch.device(device)
        self.random_start_player = random_start_player
        limit = 2 * self.params.max_deck_size + self.params.max_information_tokens
        self.episode_limit = limit if episode_limit is None else int(episode_limit)
        if self.episode_limit < 1:
            raise InvalidOption("env.episode_limit", episode_limit, ">= 1 (or None)")


class HanabiEnv(HanabiBackend):
    """Batched Hanabi over engine instances (see module docstring).

    Args: as :class:`HanabiBackend`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ph = _import_engine()
        super().__init__(*args, **kwargs)
        players, num_envs, seed = self.params.players, self.num_envs, self.seed
        ph = self._ph
        probe = ph.HanabiGame(self.params.engine_config(seed=0))
        self._encoder = ph.ObservationEncoder(probe)
        engine_dim = int(self._encoder.shape()[0])
        if engine_dim != self.layout.obs_dim or probe.max_moves() != self.layout.n_moves:
            raise RuntimeError(  # the installed engine lays things out differently
                f"engine obs_dim={engine_dim}, moves={probe.max_moves()} but the layout derived "
                f"{self.layout.obs_dim}, {self.layout.n_moves}; update HanabiLayout"
            )
        self._moves = [probe.get_move(uid) for uid in range(self.layout.n_moves)]
        self._probe = probe
        a, d, n_act = players, self.layout.obs_dim, self.layout.n_actions
        self.spec = EnvSpec(
            n_agents=a,
            obs_dim=d,
            state_dim=a * d,
            action_type="discrete",
            action_dim=n_act,
            episode_limit=self.episode_limit,
        )
        self._obs = np.zeros((num_envs, a, d), dtype=np.float32)
        self._mask = np.zeros((num_envs, a, n_act), dtype=bool)
        self._cur = np.zeros(num_envs, dtype=np.int64)
        self._t = np.zeros(num_envs, dtype=np.int64)
        self._seed = seed
        self._games: list[Any] = []
        self._states: list[Any] = []
        self._make_games(seed)

    # ------------------------------------------------------------- engine glue
    def _make_games(self, seed: int) -> None:
        ph = self._ph
        self._games = [
            ph.HanabiGame(self.params.engine_config(engine_seed(seed, i), self.random_start_player))
            for i in range(self.num_envs)
        ]
        self._states = [None] * self.num_envs

    def _new_game(self, e: int) -> None:
        lib = self._ph.lib
        state = self._games[e].new_initial_state()
        while lib.StateCurPlayer(state._state) == self._ph.CHANCE_PLAYER_ID:
            lib.StateDealRandomCard(state._state)
        self._states[e] = state
        self._t[e] = 0
        self._write(e)

    def _encode(self, state: Any, player: int, out: np.ndarray) -> None:
        ph = self._ph
        obs = ph.ffi.new("pyhanabi_observation_t*")
        ph.lib.NewObservation(state._state, player, obs)
        c_str = ph.lib.EncodeObservation(self._encoder._encoder, obs)
        raw = ph.ffi.string(c_str)
        ph.lib.DeleteString(c_str)
        ph.lib.DeleteObservation(obs)
        # canonical encodings are bits: "0,1,0,..." -> every other byte is a digit
        out[:] = np.frombuffer(raw, dtype=np.uint8)[::2] - 48

    def _write(self, e: int) -> None:
        """Refresh the observation and mask rows of env ``e`` from its engine state."""
        lib = self._ph.lib
        state = self._states[e]
        for a in range(self.spec.n_agents):
            self._encode(state, a, self._obs[e, a])
        mask = self._mask[e]
        mask[:] = False
        mask[:, self.layout.noop] = True
        cur = lib.StateCurPlayer(state._state)
        self._cur[e] = cur
        if cur >= 0 and lib.StateEndOfGameStatus(state._state) == 0:
            mask[cur, self.layout.noop] = False
            for uid, move in enumerate(self._moves):
                mask[cur, uid] = lib.MoveIsLegal(state._state, move.c_move)

    def _observation(self) -> Observation:
        obs = torch.from_numpy(self._obs.copy()).to(self.device)
        return Observation(
            obs=obs,
            state=obs.reshape(self.num_envs, -1),
            action_mask=torch.from_numpy(self._mask.copy()).to(self.device),
        )

    # ---------------------------------------------------------------- interface
    def reset(self, seed: int | None = None) -> Observation:
        """Start a new game in every env; with ``seed``, reseed every engine from ``(seed, i)``."""
        if seed is not None:
            self._make_games(seed)
        for e in range(self.num_envs):
            self._new_game(e)
        return self._observation()

    def current_player(self) -> Tensor:
        """``[E]`` long: the seat to act in each env."""
        return torch.from_numpy(self._cur.copy()).to(self.device)

    def step(self, actions: Tensor) -> StepResult:
        """Apply the current player's action in every env (see module docstring).

        Args:
            actions: ``[E, A]`` long action indices.

        Raises:
            ValueError: a current player's action is not legal (the engine would abort).
        """
        if not self._states or self._states[0] is None:
            raise RuntimeError("call reset() before step()")
        lib = self._ph.lib
        acts = actions.detach().to("cpu").long().numpy()
        if acts.shape != (self.num_envs, self.spec.n_agents):
            raise ValueError(f"actions must be [E, A] = {(self.num_envs, self.spec.n_agents)}, got {acts.shape}")
        e_idx = np.arange(self.num_envs)
        chosen = acts[e_idx, self._cur]
        legal = (chosen >= 0) & (chosen < self.layout.n_moves)
        legal[legal] = self._mask[e_idx[legal], self._cur[legal], chosen[legal]]
        if not legal.all():
            e = int(np.flatnonzero(~legal)[0])
            raise ValueError(
                f"env {e}: action {int(chosen[e])} of the current player {int(self._cur[e])} is not legal "
                f"(legal: {np.flatnonzero(self._mask[e, self._cur[e]]).tolist()})"
            )
        reward = np.zeros(self.num_envs, dtype=np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        score = np.full(self.num_envs, np.nan, dtype=np.float32)
        bombed = np.full(self.num_envs, np.nan, dtype=np.float32)
        chance = self._ph.CHANCE_PLAYER_ID
        for e in range(self.num_envs):
            s = self._states[e]._state
            before = lib.StateScore(s)
            lib.StateApplyMove(s, self._moves[int(chosen[e])].c_move)
            while lib.StateCurPlayer(s) == chance:
                lib.StateDealRandomCard(s)
            after = lib.StateScore(s)
            reward[e] = after - before
            self._t[e] += 1
            terminated[e] = lib.StateEndOfGameStatus(s) != 0
            self._write(e)
        truncated = (self._t >= self.episode_limit) & ~terminated
        done = terminated | truncated
        final_obs = self._observation()
        length = np.where(done, self._t, 0)
        for e in np.flatnonzero(done).tolist():
            s = self._states[e]._state
            score[e] = lib.StateScore(s)
            bombed[e] = float(lib.StateLifeTokens(s) == 0)
            self._new_game(int(e))
        obs = self._observation() if done.any() else final_obs
        dev = self.device
        team = torch.from_numpy(reward).to(dev)
        return StepResult(
            obs=obs,
            reward=team.unsqueeze(1).expand(-1, self.spec.n_agents).contiguous(),
            terminated=torch.from_numpy(terminated).to(dev),
            truncated=torch.from_numpy(truncated).to(dev),
            final_obs=final_obs,
            episode_return=torch.from_numpy(score.copy()).to(dev),
            episode_length=torch.from_numpy(length).to(dev),
            info={"score": torch.from_numpy(score).to(dev), "bombed": torch.from_numpy(bombed).to(dev)},
        )

    def close(self) -> None:
        self._states = []
        self._games = []

    def symmetry(self, group: str | PermutationGroup = "C5") -> GroupAction:
        """Colour-permutation action on this env's observations, states and actions."""
        return hanabi_colour_symmetry(self.layout, group, n_agents=self.spec.n_agents)
