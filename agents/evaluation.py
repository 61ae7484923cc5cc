"""``wmsim eval``: a policy that learned in a dream, played in the real env: the bundle's DreamerV2
actor (acting on posterior states of the real observations) or an SB3 zip trained in the dream."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from wmsim.bundle import Bundle
from wmsim.config import check_at_least
from wmsim.data import play_episodes
from wmsim.dream.latent_wrapper import LatentObservation
from wmsim.envs import EnvSpec, describe_spaces, make_env
from wmsim.registry import resolve_model

from .dreamerv2 import RealEnvPolicy, agent_from_bundle

PWM_KIND = "pwm-actor"  # agents.pwm.POLICY_KIND (imported lazily there)


def _real_env(bundle: Bundle, env_id: str | None, seed: int) -> gym.Env:
    spec = bundle.env_spec
    if env_id is not None:
        asked = EnvSpec.from_id(env_id)
        env = make_env(asked, seed=seed)
        ours, theirs = bundle.spaces, describe_spaces(env)
        if theirs != ours or asked.action_repeat != spec.action_repeat:
            env.close()
            raise ValueError(
                f"the real env {asked.id} does not match the bundle's env {spec.id}: spaces {theirs} vs"
                f" {ours}, action repeat {asked.action_repeat} vs {spec.action_repeat}. Evaluate in the env"
                " the model was trained on (leave out --env)"
            )
        return env
    return make_env(spec, seed=seed)


def evaluate_policy_in_real(
    model: Bundle | str | os.PathLike,
    *,
    sb3: str | None = None,
    algo: str = "PPO",
    obs_mode: str = "latent",
    env_id: str | None = None,
    episodes: int = 10,
    seed: int = 0,
    mode: bool = True,
    video: str | None = None,
    device: str = "cpu",
    random: bool = False,
    task: str | None = None,
) -> dict[str, Any]:
    """Play ``episodes`` real episodes (seeds ``seed, seed+1, ...``); returns a dict with the returns,
    their mean and std. ``video``: write the first episode's observations (image envs) as a video.
    ``random=True`` plays a uniformly random policy (seeded), the baseline of a transfer table.
    ``task``: for a multi-task bundle, the task to play (default: the one its policy learned).

    The bundle's policy is its DreamerV2 actor, or a PWM actor (:mod:`agents.pwm`)."""
    check_at_least("episodes", episodes, 1)
    bundle = resolve_model(model)
    pwm = bundle.policy_config is not None and bundle.policy_config.get("kind") == PWM_KIND
    if bundle.tasks:
        learned = bundle.policy_config.get("task") if bundle.policy_config else None
        chosen = task or learned
        if chosen is None:
            raise ValueError(f"{bundle.path} is multi-task: pass task= one of {', '.join(bundle.task_names)}")
        bundle = bundle.for_task(chosen)
        if not (random or sb3) and bundle.task != learned:
            raise ValueError(
                f"the bundle's policy learned task {learned!r}, not {bundle.task!r}: evaluate that task, or"
                " a random policy (random=True, --random)"
            )
    elif task is not None:
        raise ValueError(f"task={task!r}: {bundle.path} is single-task ({bundle.env_spec.id}); leave it out")
    env = _real_env(bundle, env_id, seed)
    recorder: _FirstEpisodeFrames | None = None
    if video is not None:
        if not bundle.model.io.image:
            env.close()
            raise ValueError(f"--video records image observations; {bundle.env_spec.id} observes vectors")
        env = recorder = _FirstEpisodeFrames(env)
    reset: Callable[[int], Any] | None = None
    if random:
        env.action_space.seed(seed)
        play_env = env

        def act(obs: Any) -> Any:
            return env.action_space.sample()

        name = "random policy"
    elif sb3 is not None:
        from stable_baselines3.common.base_class import BaseAlgorithm

        from .sb3 import ALGORITHMS

        agent = load_sb3(sb3, algo, ALGORITHMS)
        assert isinstance(agent, BaseAlgorithm)
        play_env = LatentObservation(env, bundle, seed=seed) if obs_mode == "latent" else env

        def act(obs: Any) -> Any:
            return agent.predict(obs, deterministic=mode)[0]

        name = f"SB3 {type(agent).__name__} ({Path(sb3).name})"
    else:
        if pwm:
            from .pwm import learner_from_bundle

            learner: Any = learner_from_bundle(bundle, device)[1]
            name = "PWM policy" + (f" ({bundle.task})" if bundle.task else "")
        else:
            learner = agent_from_bundle(bundle, device)
            name = "DreamerV2 policy"
        policy = RealEnvPolicy(
            bundle.model.to(device),
            learner.actor,
            env.action_space,
            learner.to_model_action,
            mode=mode,
            seed=seed,
        )
        play_env = env
        act, reset = policy.act, policy.reset
    try:
        returns = play_episodes(play_env, act, episodes, seed, on_reset=reset)
    finally:
        env.close()
    if video is not None and recorder is not None:
        _write_video(recorder.frames, video)
    return {
        "policy": name,
        "env": bundle.env_spec.id,
        **({"task": bundle.task} if bundle.task else {}),
        "returns": returns,
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
    }


def load_sb3(path: str, algo: str, algorithms: dict[str, Any]) -> Any:
    """Load an SB3 zip with SB3's own loader (``algo`` names the class; SAC zips are recognised).

    SB3 unpickles parts of the zip, so a crafted zip runs code: load only zips you trust (the ones you
    trained). Bundles are different: they are safetensors + JSON and never unpickled."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no SB3 model at {path}: pass the .zip written by model.save()")
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("data").decode()
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{path} is not an SB3 model zip ({exc})") from exc
    if "stable_baselines3.sac" in data:
        algo = "SAC"
    if algo not in algorithms:
        raise ValueError(f"algo={algo!r}: choose one of {sorted(algorithms)}")
    return algorithms[algo].load(path, device="cpu")


class _FirstEpisodeFrames(gym.Wrapper):
    """Keeps the observations of the first episode (for a video)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.frames: list[np.ndarray] = []
        self._episodes = 0

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        self._episodes += 1
        if self._episodes == 1:
            self.frames.append(np.asarray(obs))
        return obs, info

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        if self._episodes == 1:
            self.frames.append(np.asarray(out[0]))
        return out


def _write_video(frames: list[np.ndarray], path: str) -> None:
    import imageio.v3 as iio

    if not frames:
        raise ValueError("no frames were recorded")
    stack = np.stack(frames)
    if stack.shape[-1] == 1:
        stack = np.repeat(stack, 3, -1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, stack, duration=1000 / 15, loop=0)
