"""Hanabi as batched torch tensors: every env advanced by the same tensor ops (no loop over envs).

A re-implementation of the engine's rules and canonical observation (see
:mod:`eqmarl.envs.hanabi` for the interface, which this backend shares exactly: the same
observation vector, move uids + no-op, masks, rewards, autoreset, ``info['score']`` and
``info['bombed']``).  ``tests/test_hanabi_fast.py`` plays the same deals and moves on
the engine and on this backend and checks that observations, masks, rewards and
scores agree at every step.

Rules, as the engine has them: a play succeeds if the card's rank is the next of its
colour's firework (completing a colour returns an information token if below the
maximum), else it costs a life and goes to the discard pile; discarding needs an
information token below the maximum and returns one; a hint costs a token, names a
colour or rank present in the target's hand, and updates the target's card knowledge
(matching cards: that colour/rank only; others: not that colour/rank).  The acting
player draws a replacement at the end of a play or discard while the deck lasts; the
new card goes to the end of the hand.  Once the deck is empty every player has one
more turn.  The game ends when lives run out (score 0), all fireworks are complete, or
those last turns are over.

Deals: ``reset(seed)`` shuffles one deck per env (a permutation of the deck's cards,
dealt from the front: first ``hand_size`` cards to seat 0, then seat 1, ...); envs
restarted by autoreset get fresh shuffles from the env's own generator.
``reset(decks=...)`` takes explicit deck orders (to replay the engine's deals).

Differences from :class:`eqmarl.envs.hanabi.HanabiEnv`: the first player is always seat
0 (``random_start_player`` is not supported); random deals come from torch, not from
the engine's ``mt19937`` (same distribution, different games for the same seed).
Unlike the engine backend, the whole game state and the deal generator can be saved and
restored (:meth:`FastHanabiEnv.state_dict`), so ``resume=`` continues a run exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from eqmarl.core.env import EnvSpec, Observation, StepResult
from eqmarl.envs.hanabi import HanabiBackend, card_count, check_backend, hanabi_colour_symmetry
from eqmarl.symmetry.actions import GroupAction
from eqmarl.symmetry.groups import PermutationGroup

PLAY, DISCARD, HINT_COLOR, HINT_RANK = 0, 1, 2, 3


# the game state: every per-env tensor (see FastHanabiEnv's docstring)
STATE_FIELDS = (
    "deck", "deck_pos", "hands", "hand_len", "color_plaus", "rank_plaus", "color_hint", "rank_hint",
    "fireworks", "info", "life", "discards", "cur", "turns_left", "t",
    "la_player", "la_type", "la_target", "la_color", "la_rank", "la_reveal", "la_pos", "la_card",
    "la_scored", "la_info",
)  # fmt: skip


class FastHanabiEnv(HanabiBackend):
    """Batched Hanabi on torch tensors (see module docstring); same interface as ``HanabiEnv``.

    Args: as :class:`~eqmarl.envs.hanabi.HanabiBackend` (``random_start_player`` must be False:
    seat 0 starts).

    State (``E`` envs, ``P`` seats, ``H`` cards per hand, ``C`` colours, ``R`` ranks, ``D``
    cards in the deck; cards are indices ``c * R + r``, -1 for an empty slot):
        deck ``[E, D]``, deck_pos ``[E]`` (next card to draw); hands ``[E, P, H]``,
        hand_len ``[E, P]``; card knowledge color_plaus ``[E, P, H, C]`` and rank_plaus
        ``[E, P, H, R]`` (bool), color_hint / rank_hint ``[E, P, H]`` (-1: not hinted);
        fireworks ``[E, C]`` (cards played per colour); info, life, cur (seat to act),
        turns_left (turns after the deck ran out), t ``[E]``; discards ``[E, C * R]``
        (count per card); ``la_*`` ``[E]`` (``la_reveal [E, H]``): the last move.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_backend("fast", self.random_start_player)
        p, dev, seed = self.params, self.device, self.seed
        P, C, R, H = p.players, p.colors, p.ranks, p.hand_size
        self.P, self.C, self.R, self.H, self.CR = P, C, R, H, C * R
        self.D = p.max_deck_size
        self.spec = EnvSpec(
            n_agents=P,
            obs_dim=self.layout.obs_dim,
            state_dim=P * self.layout.obs_dim,
            action_type="discrete",
            action_dim=self.layout.n_actions,
            episode_limit=self.episode_limit,
        )
        # the sorted deck (card index c*R + r per card) and the discard section's layout
        counts = torch.tensor([card_count(r, R) for r in range(R)])
        self._sorted_deck = torch.repeat_interleave(torch.arange(C * R), counts.repeat(C)).to(dev)
        self._discard_type = self._sorted_deck.clone()  # card type of each discard bit
        first = torch.cat([torch.zeros(1, dtype=torch.long), counts.repeat(C).cumsum(0)[:-1]])
        self._discard_rank_in_block = (torch.arange(self.D) - first.to(torch.long)[self._discard_type.cpu()]).to(dev)
        sec = {s.name: s for s in self.layout.sections}
        self._off = {k: v.offset for k, v in sec.items()}
        self._rel = (torch.arange(P).view(P, 1) + torch.arange(P).view(1, P)) % P  # [observer, i] -> seat
        self._gen = torch.Generator(device=dev).manual_seed(seed)
        self._ar_h = torch.arange(H, device=dev)
        e = self.num_envs
        z = lambda *s, dt=torch.long: torch.zeros(*s, dtype=dt, device=dev)  # noqa: E731
        self.deck = z(e, self.D)
        self.deck_pos = z(e)
        self.hands = z(e, P, H) - 1
        self.hand_len = z(e, P)
        self.color_plaus = z(e, P, H, C, dt=torch.bool)
        self.rank_plaus = z(e, P, H, R, dt=torch.bool)
        self.color_hint = z(e, P, H) - 1
        self.rank_hint = z(e, P, H) - 1
        self.fireworks = z(e, C)
        self.info = z(e)
        self.life = z(e)
        self.discards = z(e, C * R)
        self.cur = z(e)
        self.turns_left = z(e)
        self.t = z(e)
        # last non-deal move: seat, type (-1: none), target offset, colour, rank, reveal
        # bits [H], position, card, scored, information token gained
        self.la_player = z(e)
        self.la_type = z(e) - 1
        self.la_target = z(e)
        self.la_color = z(e)
        self.la_rank = z(e)
        self.la_reveal = z(e, H, dt=torch.bool)
        self.la_pos = z(e)
        self.la_card = z(e)
        self.la_scored = z(e, dt=torch.bool)
        self.la_info = z(e, dt=torch.bool)

    # ------------------------------------------------------------------ deals
    def shuffled_decks(self, n: int) -> Tensor:
        """``[n, D]`` long: ``n`` uniformly shuffled decks (card index ``c * R + r``)."""
        order = torch.rand(n, self.D, generator=self._gen, device=self.device).argsort(dim=1)
        return self._sorted_deck[order]

    def _new_games(self, env_mask: Tensor, decks: Tensor) -> None:
        """Start new games in the envs selected by ``env_mask [E]`` with ``decks [n, D]``."""
        idx = env_mask.nonzero().flatten()
        if idx.numel() == 0:
            return
        p, P, H = self.params, self.P, self.H
        self.deck[idx] = decks
        self.deck_pos[idx] = P * H
        self.hands[idx] = decks[:, : P * H].view(-1, P, H)
        self.hand_len[idx] = H
        self.color_plaus[idx] = True
        self.rank_plaus[idx] = True
        self.color_hint[idx] = -1
        self.rank_hint[idx] = -1
        self.fireworks[idx] = 0
        self.info[idx] = p.max_information_tokens
        self.life[idx] = p.max_life_tokens
        self.discards[idx] = 0
        self.cur[idx] = 0
        self.turns_left[idx] = P
        self.t[idx] = 0
        self.la_type[idx] = -1

    def reset(self, seed: int | None = None, decks: Tensor | None = None) -> Observation:
        """Start a new game in every env.

        Args:
            seed: reseed the deal generator first.
            decks: ``[E, D]`` long explicit deck orders (card index ``c * R + r``), dealt
                from the front; default: random shuffles.
        """
        if seed is not None:
            self._gen.manual_seed(seed)
        if decks is None:
            decks = self.shuffled_decks(self.num_envs)
        decks = decks.to(self.device).long()
        if decks.shape != (self.num_envs, self.D):
            raise ValueError(f"decks must be [E, D] = {(self.num_envs, self.D)}, got {tuple(decks.shape)}")
        if not torch.equal(decks.sort(dim=1).values, self._sorted_deck.expand_as(decks)):
            raise ValueError("every deck must hold exactly the variant's cards")
        self._new_games(torch.ones(self.num_envs, dtype=torch.bool, device=self.device), decks)
        return self._observation(terminal=torch.zeros(self.num_envs, dtype=torch.bool, device=self.device))

    # ----------------------------------------------------------------- status
    def score(self) -> Tensor:
        """``[E]`` long: the engine's score (fireworks built; 0 once the lives are gone)."""
        return torch.where(self.life > 0, self.fireworks.sum(1), torch.zeros_like(self.life))

    def current_player(self) -> Tensor:
        """``[E]`` long: the seat to act."""
        return self.cur.clone()

    def legal_moves(self) -> Tensor:
        """``[E, n_moves]`` bool: the current player's legal moves (by uid)."""
        p, P, C, R, H = self.params, self.P, self.C, self.R, self.H
        e = torch.arange(self.num_envs, device=self.device)
        n_cards = self.hand_len[e, self.cur]  # [E]
        has = self._ar_h.view(1, H) < n_cards.view(-1, 1)  # [E, H]
        can_discard = has & (self.info < p.max_information_tokens).view(-1, 1)
        targets = (self.cur.view(-1, 1) + torch.arange(1, P, device=self.device).view(1, -1)) % P  # [E, P-1]
        cards = self.hands[e.view(-1, 1), targets]  # [E, P-1, H]
        valid = cards >= 0
        col = torch.where(valid, cards // R, -1)
        rnk = torch.where(valid, cards % R, -1)
        has_col = (col.unsqueeze(-1) == torch.arange(C, device=self.device)).any(2)  # [E, P-1, C]
        has_rnk = (rnk.unsqueeze(-1) == torch.arange(R, device=self.device)).any(2)  # [E, P-1, R]
        tok = (self.info > 0).view(-1, 1, 1)
        return torch.cat([can_discard, has, (has_col & tok).flatten(1), (has_rnk & tok).flatten(1)], dim=1)

    # -------------------------------------------------------------- encoding
    def _observation(self, terminal: Tensor, reuse: Observation | None = None) -> Observation:
        """Observations and masks of every env.

        Args:
            terminal: ``[E]`` bool, games that are over (their masks allow only the no-op).
            reuse: after an autoreset: the observation of the step's final states; then
                ``terminal`` marks the envs that restarted, the only ones re-encoded.
        """
        E, P = self.num_envs, self.P
        legal = self.legal_moves()
        self._legal = legal
        mask = torch.zeros(E, P, self.spec.action_dim, dtype=torch.bool, device=self.device)
        mask[:, :, self.layout.noop] = True
        e = torch.arange(E, device=self.device)
        if reuse is None:
            obs = self.encode()
            live = ~terminal
            mask[e, self.cur] = torch.cat([legal & live.view(-1, 1), terminal.view(-1, 1)], dim=1)
        else:  # ``terminal`` marks the envs that restarted: encode only those
            idx = terminal.nonzero().flatten()
            obs = reuse.obs.clone()
            obs[idx] = self.encode(idx)
            mask[e, self.cur] = torch.cat([legal, torch.zeros_like(terminal).view(-1, 1)], dim=1)
        return Observation(obs=obs, state=obs.reshape(E, -1), action_mask=mask)

    def encode(self, idx: Tensor | None = None) -> Tensor:
        """The canonical observation of every seat: ``[E, P, obs_dim]`` float32 (``[n, P, obs_dim]``
        for the envs ``idx [n]`` when given)."""
        p, P, C, R, H, CR = self.params, self.P, self.C, self.R, self.H, self.CR
        dev = self.device

        def get(name: str) -> Tensor:
            t = getattr(self, name)
            return t if idx is None else t[idx]

        hands, hand_len = get("hands"), get("hand_len")
        E = hands.shape[0]
        out = torch.zeros(E, P, self.layout.obs_dim, dtype=torch.bool, device=dev)
        rel = self._rel.to(dev)  # [P, P]: observer o, relative i -> seat
        o = self._off["hands"]
        # hands: the other players' cards, one-hot per card; then "missing a card" bits
        cards = hands[:, rel[:, 1:]]  # [E, P(obs), P-1, H]
        n = (P - 1) * H * CR
        out[:, :, o : o + n] = (cards.unsqueeze(-1) == torch.arange(CR, device=dev)).reshape(E, P, n)
        out[:, :, o + n : o + n + P] = hand_len[:, rel] < H
        # board: deck size thermometer, fireworks, information and life tokens
        base = self._off["board"]
        o = 0
        n_deck = self.D - P * H
        remaining = self.D - get("deck_pos")
        fireworks = get("fireworks")
        shared = torch.zeros(E, self._off["last_action"] - base, dtype=torch.bool, device=dev)
        shared[:, o : o + n_deck] = torch.arange(n_deck, device=dev) < remaining.view(E, 1)
        o += n_deck
        shared[:, o : o + CR] = ((fireworks - 1).unsqueeze(-1) == torch.arange(R, device=dev)).reshape(E, CR)
        o += CR
        mi, ml = p.max_information_tokens, p.max_life_tokens
        shared[:, o : o + mi] = torch.arange(mi, device=dev) < get("info").view(E, 1)
        o += mi
        shared[:, o : o + ml] = torch.arange(ml, device=dev) < get("life").view(E, 1)
        # discards: per card type, a thermometer of how many were discarded
        o = self._off["discards"] - base
        shared[:, o : o + self.D] = get("discards")[:, self._discard_type] > self._discard_rank_in_block
        out[:, :, base : self._off["last_action"]] = shared.unsqueeze(1)
        o = self._off["last_action"]
        la = self._encode_last_action(get)
        out[:, :, o : o + la.shape[-1]] = la
        if p.observation_type != "minimal":
            o = self._off["card_knowledge"]
            plaus = (get("color_plaus").unsqueeze(-1) & get("rank_plaus").unsqueeze(-2)).reshape(E, P, H, CR)
            chint = get("color_hint").unsqueeze(-1) == torch.arange(C, device=dev)
            rhint = get("rank_hint").unsqueeze(-1) == torch.arange(R, device=dev)
            know = torch.cat([plaus, chint, rhint], -1)  # [E, P, H, CR + C + R]
            know &= (self._ar_h.view(1, 1, H) < hand_len.unsqueeze(-1)).unsqueeze(-1)
            out[:, :, o:] = know[:, rel].reshape(E, P, -1)
        return out.float()

    def _encode_last_action(self, get) -> Tensor:
        P, C, R, H, CR = self.P, self.C, self.R, self.H, self.CR
        dev = self.device
        la_type = get("la_type")
        E = la_type.shape[0]
        obs_seat = torch.arange(P, device=dev).view(1, P)
        rel_player = (get("la_player").view(E, 1) - obs_seat) % P  # [E, P]
        is_hint = (la_type == HINT_COLOR) | (la_type == HINT_RANK)
        is_pd = (la_type == PLAY) | (la_type == DISCARD)
        rel_target = torch.where(is_hint.view(E, 1), (rel_player + get("la_target").view(E, 1)) % P, -1)
        rel_player = torch.where((la_type >= 0).view(E, 1), rel_player, -1)

        def onehot(x: Tensor, k: int) -> Tensor:
            return x.unsqueeze(-1) == torch.arange(k, device=dev)

        def shared(x: Tensor) -> Tensor:
            return x.unsqueeze(1).expand(E, P, x.shape[-1])

        # move type order in the encoding: play, discard, reveal colour, reveal rank
        fields = [
            onehot(rel_player, P),
            shared(onehot(la_type, 4)),
            onehot(rel_target, P),
            shared(onehot(torch.where(la_type == HINT_COLOR, get("la_color"), -1), C)),
            shared(onehot(torch.where(la_type == HINT_RANK, get("la_rank"), -1), R)),
            shared(get("la_reveal") & is_hint.view(E, 1)),
            shared(onehot(torch.where(is_pd, get("la_pos"), -1), H)),
            shared(onehot(torch.where(is_pd, get("la_card"), -1), CR)),
            shared(torch.stack([get("la_scored"), get("la_info")], 1) & (la_type == PLAY).view(E, 1)),
        ]
        return torch.cat(fields, -1)

    # -------------------------------------------------------------- dynamics
    def step(self, actions: Tensor) -> StepResult:
        """Apply the current player's action in every env (interface of ``HanabiEnv.step``).

        Args:
            actions: ``[E, A]`` long action indices.

        Raises:
            ValueError: a current player's action is not legal.
        """
        p, P, C, R, H = self.params, self.P, self.C, self.R, self.H
        E, dev = self.num_envs, self.device
        if not hasattr(self, "_legal"):
            raise RuntimeError("call reset() before step()")
        actions = actions.to(dev).long()
        if actions.shape != (E, P):
            raise ValueError(f"actions must be [E, A] = {(E, P)}, got {tuple(actions.shape)}")
        e = torch.arange(E, device=dev)
        uid = actions[e, self.cur]
        legal = self._legal
        ok = (uid >= 0) & (uid < self.layout.n_moves)
        ok &= legal[e, uid.clamp(0, self.layout.n_moves - 1)]
        if not bool(ok.all()):
            bad = int((~ok).nonzero()[0, 0])
            raise ValueError(
                f"env {bad}: action {int(uid[bad])} of the current player {int(self.cur[bad])} is not legal "
                f"(legal: {legal[bad].nonzero().flatten().tolist()})"
            )
        score_before = self.score()
        deck_empty_before = self.deck_pos >= self.D
        # decode the move uid
        n_col = (P - 1) * C
        is_discard = uid < H
        is_play = (uid >= H) & (uid < 2 * H)
        is_color = (uid >= 2 * H) & (uid < 2 * H + n_col)
        is_rank = uid >= 2 * H + n_col
        pos = torch.where(is_discard, uid, uid - H).clamp(0, H - 1)
        hc = (uid - 2 * H).clamp(min=0)
        hr = (uid - 2 * H - n_col).clamp(min=0)
        offset = torch.where(is_color, hc // C + 1, hr // R + 1)
        h_color = hc % C
        h_rank = hr % R
        mtype = torch.where(
            is_play, PLAY, torch.where(is_discard, DISCARD, torch.where(is_color, HINT_COLOR, HINT_RANK))
        )

        # ----- play / discard
        pd = is_play | is_discard
        card = self.hands[e, self.cur, pos]  # [E]
        c_card, r_card = card.clamp(min=0) // R, card.clamp(min=0) % R
        fw = self.fireworks[e, c_card]
        success = is_play & (fw == r_card)
        fail = is_play & ~success
        self.fireworks[e, c_card] = fw + success.long()
        completed = success & (fw + 1 == R)
        gain_play = completed & (self.info < p.max_information_tokens)
        gain_discard = is_discard & (self.info < p.max_information_tokens)
        self.info += gain_play.long() + gain_discard.long()
        self.life -= fail.long()
        to_pile = is_discard | fail
        self.discards[e, card.clamp(min=0)] += to_pile.long()
        # remove the card (shift the rest left) and draw a replacement to the end
        self._remove_card(pd, pos)
        draw = pd & (self.deck_pos < self.D)
        new_card = self.deck[e, self.deck_pos.clamp(max=self.D - 1)]
        slot = self.hand_len[e, self.cur]  # after removal
        de, ds = e[draw], slot[draw]
        cp = self.cur[draw]
        self.hands[de, cp, ds] = new_card[draw]
        self.color_plaus[de, cp, ds] = True
        self.rank_plaus[de, cp, ds] = True
        self.color_hint[de, cp, ds] = -1
        self.rank_hint[de, cp, ds] = -1
        self.hand_len[de, cp] += 1
        self.deck_pos += draw.long()

        # ----- hints
        hint = is_color | is_rank
        target = (self.cur + offset) % P
        tcards = self.hands[e, target]  # [E, H]
        valid = tcards >= 0
        match_c = valid & (tcards // R == h_color.view(-1, 1))
        match_r = valid & (tcards % R == h_rank.view(-1, 1))
        match = torch.where(is_color.view(-1, 1), match_c, match_r)
        he = e[hint]
        ht = target[hint]
        cc = is_color[hint].view(-1, 1)
        m = match[hint]
        v = valid[hint]
        cplaus = self.color_plaus[he, ht]  # [n, H, C]
        rplaus = self.rank_plaus[he, ht]
        col_oh = torch.nn.functional.one_hot(h_color[hint], C).bool().view(-1, 1, C)
        rnk_oh = torch.nn.functional.one_hot(h_rank[hint], R).bool().view(-1, 1, R)
        new_c = torch.where(m.unsqueeze(-1), col_oh, cplaus & ~col_oh)
        new_r = torch.where(m.unsqueeze(-1), rnk_oh, rplaus & ~rnk_oh)
        self.color_plaus[he, ht] = torch.where((cc & v).unsqueeze(-1), new_c, cplaus)
        self.rank_plaus[he, ht] = torch.where((~cc & v).unsqueeze(-1), new_r, rplaus)
        self.color_hint[he, ht] = torch.where(cc & m, h_color[hint].view(-1, 1), self.color_hint[he, ht])
        self.rank_hint[he, ht] = torch.where(~cc & m, h_rank[hint].view(-1, 1), self.rank_hint[he, ht])
        self.info -= hint.long()

        # ----- last action record
        self.la_player = self.cur.clone()
        self.la_type = mtype
        self.la_target = torch.where(hint, offset, torch.zeros_like(offset))
        self.la_color = h_color
        self.la_rank = h_rank
        self.la_reveal = match & hint.view(-1, 1)
        self.la_pos = pos
        self.la_card = torch.where(pd, card, torch.zeros_like(card))
        self.la_scored = success
        self.la_info = gain_play

        # ----- turn order and the end of the game
        self.turns_left -= deck_empty_before.long()
        self.cur = (self.cur + 1) % P
        self.t += 1
        score_after = self.score()
        terminated = (self.life < 1) | (self.fireworks.sum(1) >= C * R) | (self.turns_left <= 0)
        truncated = (self.t >= self.episode_limit) & ~terminated
        done = terminated | truncated
        reward = (score_after - score_before).float()
        final_obs = self._observation(terminal=terminated)
        nan = torch.full((E,), float("nan"), device=dev)
        score = torch.where(done, score_after.float(), nan)
        bombed = torch.where(done, (self.life == 0).float(), nan)
        length = torch.where(done, self.t, torch.zeros_like(self.t))
        if bool(done.any()):
            self._new_games(done, self.shuffled_decks(int(done.sum())))
            obs = self._observation(terminal=done, reuse=final_obs)
        else:
            obs = final_obs
        return StepResult(
            obs=obs,
            reward=reward.view(E, 1).expand(E, P).contiguous(),
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            episode_return=score,
            episode_length=length,
            info={"score": score.clone(), "bombed": bombed},
        )

    def _remove_card(self, sel: Tensor, pos: Tensor) -> None:
        """Remove card ``pos [E]`` from the current player's hand where ``sel [E]``; later cards move up."""
        E, H = self.num_envs, self.H
        e = torch.arange(E, device=self.device)
        src = self._ar_h.view(1, H) + (self._ar_h.view(1, H) >= pos.view(-1, 1)).long()  # [E, H]
        src = torch.where(sel.view(-1, 1), src, self._ar_h.view(1, H).expand(E, H))
        keep = src < H
        srcc = src.clamp(max=H - 1)
        cur = self.cur
        for name, fill in (("hands", -1), ("color_hint", -1), ("rank_hint", -1)):
            t = getattr(self, name)
            row = t[e, cur]  # [E, H]
            t[e, cur] = torch.where(keep, row.gather(1, srcc), torch.full_like(row, fill))
        for name in ("color_plaus", "rank_plaus"):
            t = getattr(self, name)
            row = t[e, cur]  # [E, H, K]
            g = row.gather(1, srcc.unsqueeze(-1).expand_as(row))
            t[e, cur] = g & keep.unsqueeze(-1)
        self.hand_len[e, cur] -= sel.long()

    # -------------------------------------------------------------- save/restore
    def state_dict(self) -> dict[str, Tensor]:
        """Every game's state and the deal generator's state (for exact resume)."""
        st = {name: getattr(self, name).clone() for name in STATE_FIELDS}
        st["generator"] = self._gen.get_state()
        return st

    def load_state_dict(self, st: dict[str, Tensor]) -> Observation:
        """Restore :meth:`state_dict`; returns the current observation (no game is over
        between steps: finished games were already restarted by autoreset)."""
        missing = [k for k in (*STATE_FIELDS, "generator") if k not in st]
        if missing:
            raise ValueError(f"Hanabi env state lacks {missing}")
        for name in STATE_FIELDS:
            cur = getattr(self, name)
            if st[name].shape != cur.shape:
                raise ValueError(
                    f"Hanabi env state {name!r} has shape {tuple(st[name].shape)}; this env expects "
                    f"{tuple(cur.shape)} (another variant or train.num_envs?)"
                )
            setattr(self, name, st[name].to(self.device).clone())
        self._gen.set_state(st["generator"])
        return self._observation(terminal=torch.zeros(self.num_envs, dtype=torch.bool, device=self.device))

    def close(self) -> None:
        pass

    def symmetry(self, group: str | PermutationGroup = "C5") -> GroupAction:
        """Colour-permutation action on observations, states and actions (as ``HanabiEnv.symmetry``)."""
        return hanabi_colour_symmetry(self.layout, group, n_agents=self.spec.n_agents)
