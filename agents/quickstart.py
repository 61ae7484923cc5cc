"""The quickstart: train a Stable-Baselines3 agent only inside a shipped world model, then play it in the
real game against a random policy.

1. Resolve the model (a pretrained name such as ``CartPole``; no network needed: the copy
   shipped with wmsim is the last resort).
2. Train PPO for ``steps`` dreamed steps in ``num_envs`` batched dreams (SB3 ``VecEnv`` over the
   native batched dream), recording the learning curve in the dream.
3. Play ``episodes`` seeded episodes in the real env with the trained agent and with a random policy.
4. Print a table, write ``quickstart.json``, ``learning_curve.png`` and ``dream_vs_real.gif``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from wmsim.config import check_at_least
from wmsim.dream.sb3 import DreamSB3VecEnv
from wmsim.dream.simulator import bundle_for_task
from wmsim.registry import resolve_model

from .sb3 import RealEvaluation, evaluate_in_real

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuickstartConfig:
    """One quickstart run."""

    env: str = field(
        default="CartPole",
        metadata={"help": "pretrained name (Pong, CartPole, Pendulum, CartpoleSwingup) or bundle"},
    )
    task: str = field(default="", metadata={"help": "the task of a multi-task model (its name or env id)"})
    steps: int = field(default=0, metadata={"help": "PPO steps in the dream (0: the model's default)"})
    num_envs: int = field(default=16, metadata={"help": "batched dreams"})
    obs_mode: str = field(
        default="auto", metadata={"help": "latent, pixels, or auto (latent for images, pixels for vectors)"}
    )
    time_limit: int = field(
        default=0, metadata={"help": "dreamed episode length in steps (0: the env's default for dreams)"}
    )
    episodes: int = field(default=10, metadata={"help": "seeded real episodes per policy"})
    seed: int = 0
    eval_seed: int = field(default=10_000, metadata={"help": "seed of the first real episode"})
    out: str = field(default="runs/quickstart", metadata={"help": "output folder"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or auto"})

    def __post_init__(self) -> None:
        for name, low in (("steps", 0), ("num_envs", 1), ("time_limit", 0), ("episodes", 1)):
            check_at_least(name, getattr(self, name), low)


#: PPO steps in the dream and PPO settings per real env, sized for a few minutes on a 2-core CPU. More is
#: not better: on the shipped cartpole-swingup model, 400k steps (n_steps 256) reached 330 in the dream
#: but 128 in the real env (the policy exploits the model), against 250 after the default 131k.
DEFAULT_STEPS = {
    "gym/CartPole-v1": 60_000,
    "gym/Pendulum-v1": 100_000,
    "atari/Pong": 300_000,
    "dmc/cartpole-swingup": 100_000,
}
PPO_SETTINGS: dict[str, dict[str, Any]] = {
    "gym/CartPole-v1": {"n_steps": 128, "batch_size": 256, "n_epochs": 4},
    "gym/Pendulum-v1": {"n_steps": 256, "batch_size": 256, "gae_lambda": 0.95, "gamma": 0.9},
    "atari/Pong": {"n_steps": 128, "batch_size": 512, "ent_coef": 0.01},
}
#: Dreamed episode lengths where the real one is too long to learn from: a real Pong game can last 27,000
#: agent steps, and PPO's curve needs finished episodes. A dream starts from a state of the bundle's bank
#: (real episode starts; for the shipped Pong, states mid-game: `wmsim pretrain --start_context`).
#: On the offline Pong model, 100-step dreams (the serve and about one rally) transfer where 400-step
#: dreams do not: the model's ball drifts over long dreams, and PPO learnt to exploit the drift.
DREAM_TIME_LIMIT = {"atari/Pong": 100}


@dataclass
class QuickstartResult:
    model: str
    env: str
    obs_mode: str
    dream_steps: int
    dream_seconds: float
    dream_steps_per_second: float
    agent: dict[str, float]
    random: dict[str, float]
    curve: list[tuple[int, float]]
    files: dict[str, str]


class _Curve(BaseCallback):
    """Mean return of the dreamed episodes finished since the last rollout, per rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.ep_info_buffer
        if buffer:
            self.points.append((self.num_timesteps, float(np.mean([info["r"] for info in buffer]))))


def obs_mode_for(config: QuickstartConfig, image: bool) -> str:
    if config.obs_mode != "auto":
        return config.obs_mode
    return "latent" if image else "pixels"


def run_quickstart(config: QuickstartConfig, *, progress: bool = True) -> QuickstartResult:
    bundle = bundle_for_task(resolve_model(config.env), config.task or None)
    name = bundle.env_spec.id
    steps = config.steps or DEFAULT_STEPS.get(name, 100_000)
    obs_mode = obs_mode_for(config, bundle.model.io.image)
    limit = config.time_limit or DREAM_TIME_LIMIT.get(name)
    env = VecMonitor(
        DreamSB3VecEnv(
            bundle,
            config.num_envs,
            obs_mode=obs_mode,
            device=config.device,
            seed=config.seed,
            time_limit=limit,
        )
    )
    policy = "CnnPolicy" if obs_mode == "pixels" and bundle.model.io.image else "MlpPolicy"
    agent = PPO(policy, env, seed=config.seed, device=config.device, verbose=0, **PPO_SETTINGS.get(name, {}))
    curve = _Curve()
    start = time.perf_counter()
    agent.learn(total_timesteps=steps, callback=curve, progress_bar=progress)
    seconds = time.perf_counter() - start
    env.close()
    real = evaluate_in_real(agent, bundle, episodes=config.episodes, seed=config.eval_seed, obs_mode=obs_mode)
    random = evaluate_in_real(
        None, bundle, episodes=config.episodes, seed=config.eval_seed, obs_mode=obs_mode
    )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    agent.save(out / "ppo_dream.zip")
    files = {"agent": str(out / "ppo_dream.zip")}
    files["learning_curve"] = str(
        write_learning_curve(curve.points, real, random, out / "learning_curve.png")
    )
    video = write_dream_vs_real(bundle, agent, obs_mode, out / "dream_vs_real.gif", seed=config.eval_seed)
    if video is not None:
        files["dream_vs_real"] = str(video)
    result = QuickstartResult(
        model=str(bundle.path),
        env=bundle.env_spec.id,
        obs_mode=obs_mode,
        dream_steps=int(agent.num_timesteps),
        dream_seconds=seconds,
        dream_steps_per_second=agent.num_timesteps / seconds,
        agent=_summary(real),
        random=_summary(random),
        curve=curve.points,
        files=files,
    )
    (out / "quickstart.json").write_text(json.dumps(asdict(result), indent=2))
    return result


def _summary(evaluation: RealEvaluation) -> dict[str, float]:
    return {"mean": evaluation.mean, "std": evaluation.std, "episodes": len(evaluation.returns)}


def format_result(result: QuickstartResult) -> str:
    rows = [
        ("real env", result.env),
        ("PPO steps in the dream", f"{result.dream_steps:,}"),
        ("dream steps/s (training)", f"{result.dream_steps_per_second:,.0f}"),
        (
            "real return, PPO trained in the dream",
            f"{result.agent['mean']:.1f} +- {result.agent['std']:.1f}",
        ),
        ("real return, random policy", f"{result.random['mean']:.1f} +- {result.random['std']:.1f}"),
    ]
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}}  {value}" for key, value in rows]
    lines += [f"wrote {path}" for path in result.files.values()]
    return "\n".join(lines)


def write_learning_curve(
    points: list[tuple[int, float]], real: RealEvaluation, random: RealEvaluation, path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    if points:
        steps, returns = zip(*points, strict=True)
        axis.plot(steps, returns, label="PPO, return in the dream")
    axis.axhline(real.mean, color="tab:green", linestyle="--", label=f"PPO in the real env ({real.mean:.1f})")
    axis.axhline(
        random.mean, color="tab:red", linestyle=":", label=f"random in the real env ({random.mean:.1f})"
    )
    axis.set_xlabel("dreamed steps")
    axis.set_ylabel("episode return")
    axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_dream_vs_real(
    bundle: Any, agent: PPO, obs_mode: str, path: Path, seed: int, steps: int = 150
) -> Path | None:
    """The dream (started from the real env's first frame) beside the real env, both driven by the
    agent's actions, as a GIF; None when this model's observations cannot be drawn."""
    from wmsim.play import dream_frames, write_video

    def act(obs: np.ndarray) -> Any:
        return agent.predict(obs, deterministic=True)[0]

    try:
        frames = dream_frames(
            bundle,
            act,
            steps=steps,
            side_by_side=True,
            from_real=True,
            policy_obs="latent" if obs_mode == "latent" else "pixels",
            seed=seed,
        )
    except (ValueError, ImportError) as exc:
        log.warning("no dream-vs-real video: %s", exc)
        return None
    return write_video(frames, path, fps=15)
