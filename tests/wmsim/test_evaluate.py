"""Open-loop evaluation: object recall, the figure that tells whether an image model draws small moving
objects (a ball) rather than only the background that dominates the squared error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wmsim.bundle import Bundle
from wmsim.card import _fidelity_section
from wmsim.data import random_policy, rollout
from wmsim.envs import make_env
from wmsim.evaluate import REGIONS, OpenLoopResult, format_table, object_hits, open_loop


def test_object_hits_count_object_pixels_and_those_drawn() -> None:
    background = torch.zeros(4, 4, 1, dtype=torch.uint8)
    real = torch.zeros(1, 1, 4, 4, 1, dtype=torch.uint8)
    real[0, 0, 1, 1] = 200  # an object pixel
    real[0, 0, 2, 2] = 200  # another one
    real[0, 0, 3, 3] = 10  # too close to the background to count (10/255 < 0.08)
    pred = torch.zeros_like(real)
    pred[0, 0, 1, 1] = 160  # within a quarter of the contrast (200 - 160 < 50): recalled
    pred[0, 0, 2, 2] = 140  # a faint smear (200 - 140 > 50): not recalled
    hits, objects = object_hits(real, pred, background)
    assert objects.tolist() == [[2.0]] and hits.tolist() == [[1.0]]
    assert object_hits(real, real, background)[0].tolist() == [[2.0]]
    assert object_hits(real, background.expand_as(real), background)[0].tolist() == [[0.0]]


def test_open_loop_reports_object_recall_for_images_only(
    pong_bundle: Bundle, cartpole_bundle: Bundle
) -> None:
    env = make_env("atari/Pong")
    episodes = [
        rollout(env, random_policy(env.action_space), pong_bundle.model.io, seed=s, max_steps=40)
        for s in (0, 1)
    ]
    env.close()
    result, _ = open_loop(pong_bundle.model, episodes, context=5, horizon=10)
    assert result.object_recall is not None and result.object_recall_baseline is not None
    assert len(result.object_recall) == 10
    recall = np.asarray(result.object_recall)
    baseline = np.asarray(result.object_recall_baseline)
    assert ((recall >= 0) & (recall <= 1)).all() and ((baseline >= 0) & (baseline <= 1)).all()
    # Repeating the last frame recalls what has not moved yet: the most at one step.
    assert baseline[0] >= baseline[1:].max()
    assert "objects" in format_table(result)
    assert "object recall" in _fidelity_section(json_of(result))

    env = make_env("CartPole-v1")
    episodes = [rollout(env, random_policy(env.action_space), cartpole_bundle.model.io, seed=0)]
    env.close()
    vector_result, _ = open_loop(cartpole_bundle.model, episodes, context=2, horizon=5)
    assert vector_result.object_recall is None and "objects" not in format_table(vector_result)
    assert "object recall" not in _fidelity_section(json_of(vector_result))


def json_of(result: OpenLoopResult) -> dict[str, object]:
    return dict(json.loads(result.to_json()))


def test_regions_and_one_step_events(pong_bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env("atari/Pong")
    episodes = [
        rollout(env, random_policy(env.action_space), pong_bundle.model.io, seed=s, max_steps=30)
        for s in (0, 1)
    ]
    env.close()
    episodes[0]["reward"][[5, 9]] = [1.0, -1.0]  # a point won and a point lost
    episodes[1]["is_terminal"][-1] = True
    model = pong_bundle.model
    regions = REGIONS["atari/Pong"]
    result, _ = open_loop(model, episodes, context=5, horizon=4, regions=regions)
    assert result.region_recall is not None and set(result.region_recall) == {"ball"}
    assert "ball" in format_table(result) and "one step ahead" in format_table(result)
    events = result.events
    assert events is not None
    assert (events["reward_up_steps"], events["reward_down_steps"], events["terminal_steps"]) == (1, 1, 1)
    # A reward head that always says "point won" sees every point won, none lost, and alarms always.
    monkeypatch.setattr(type(model), "reward", lambda self, feat: torch.ones(feat.shape[:-1]))
    always, _ = open_loop(model, episodes, context=5, horizon=4)
    assert always.events is not None
    assert always.events["reward_up_recall"] == 1.0 and always.events["reward_down_recall"] == 0.0
    assert always.events["reward_false_alarm"] == 1.0
