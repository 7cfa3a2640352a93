"""EpisodeTracker: the envs' running episode returns and lengths."""

from __future__ import annotations

import math

import torch

from eqmarl.core.tracking import EpisodeTracker


def test_reports_and_resets_only_the_finished_episodes() -> None:
    tracker = EpisodeTracker(3)
    tracker.add(torch.tensor([1.0, 2.0, 3.0]))
    tracker.add(torch.tensor([0.5, 0.5, 0.5]))
    episode_return, episode_length = tracker.finish(torch.tensor([True, False, True]))
    assert episode_return[0] == 1.5 and math.isnan(episode_return[1]) and episode_return[2] == 3.5
    assert episode_length.tolist() == [2, 0, 2] and episode_length.dtype == torch.long
    assert tracker.length.tolist() == [0, 2, 0] and tracker.returns.tolist() == [0.0, 2.5, 0.0]


def test_steps_and_unreported_episodes() -> None:
    """A restarted worker's env does not count the step; a crashed game ends unreported."""
    tracker = EpisodeTracker(2)
    tracker.add(torch.tensor([1.0, 1.0]), steps=torch.tensor([1, 0]))
    assert tracker.length.tolist() == [1, 0]
    done = torch.tensor([True, True])
    episode_return, episode_length = tracker.finish(done, report=torch.tensor([True, False]))
    assert episode_return[0] == 1.0 and math.isnan(episode_return[1])
    assert episode_length.tolist() == [1, 0]
    assert tracker.length.tolist() == [0, 0] and tracker.returns.tolist() == [0.0, 0.0]


def test_state_dict_round_trip_and_reset() -> None:
    tracker = EpisodeTracker(2)
    tracker.add(torch.tensor([2.0, -1.0]))
    state = tracker.state_dict()
    assert set(state) == {"t", "ret"}  # the keys of the env checkpoints
    other = EpisodeTracker(2)
    other.load_state_dict(state)
    assert torch.equal(other.length, tracker.length) and torch.equal(other.returns, tracker.returns)
    tracker.reset()
    assert tracker.length.tolist() == [0, 0] and other.length.tolist() == [1, 1]
