"""DeepMind Control Suite tasks as Gymnasium envs, with fast pixel observations.

``DMCEnv`` wraps ``dm_control.suite.load(domain, task)``: each agent step repeats the action for
``action_repeat`` control steps (summing rewards, stopping at the episode's end). Pixel observations are
rendered by one reused ``dm_control.mujoco.Camera`` per physics, with multisampling and shadows switched off
(``model.vis.quality.offsamples = 0``, ``model.light_castshadow[:] = 0``): about 10x faster than
``physics.render`` and the same camera, scene and colours. The suite's own time limit is switched off; the
episode length is ``spec.time_limit`` agent steps (applied by :func:`wmsim.envs.make_env`; DreamerV2's 500
steps x action repeat 2 are the suite's usual 1000 control steps).

dm_control is imported lazily; ``MUJOCO_GL`` defaults to ``egl`` on Linux so that rendering works headless.
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from .spec import ID_HELP, EnvSpec

RENDER_SIZE = (256, 256)  # (height, width) of render() frames
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luminance weights


def _suite() -> Any:
    """``dm_control.suite``, imported with a headless GL backend unless ``MUJOCO_GL`` is set."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault("MUJOCO_GL", "egl")
    from dm_control import suite

    return suite


def dmc_tasks() -> dict[str, list[str]]:
    """``{domain: [task, ...]}`` for every task in ``dm_control.suite.ALL_TASKS``."""
    tasks: dict[str, list[str]] = {}
    for domain, task in _suite().ALL_TASKS:
        tasks.setdefault(domain, []).append(task)
    return tasks


def resolve_task(name: str, env_id: str | None = None) -> tuple[str, str]:
    """Split ``"<domain>-<task>"`` into ``(domain, task)``; unknown ones raise ``ValueError`` listing the
    valid tasks."""
    shown = env_id if env_id is not None else f"dmc/{name}"
    domain, sep, task = name.partition("-")
    if not sep or not domain or not task:
        raise ValueError(
            f"malformed dmc id {shown!r}: dmc ids look like dmc/<domain>-<task>, e.g. dmc/cartpole-swingup, "
            f"dmc/walker-walk, dmc/ball_in_cup-catch ({ID_HELP})"
        )
    tasks = dmc_tasks()
    if domain not in tasks:
        close = difflib.get_close_matches(domain, list(tasks), n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown dm_control domain {domain!r} in {shown!r}.{hint} Valid domains: "
            f"{', '.join(sorted(tasks))} (ids look like dmc/<domain>-<task>, e.g. dmc/cartpole-swingup; "
            "see dm_control.suite.ALL_TASKS)"
        )
    if task not in tasks[domain]:
        valid = ", ".join(f"dmc/{domain}-{t}" for t in tasks[domain])
        raise ValueError(
            f"unknown dm_control task {task!r} for domain {domain!r} in {shown!r}: valid tasks are {valid} "
            "(see dm_control.suite.ALL_TASKS)"
        )
    return domain, task


class DMCEnv(gym.Env[np.ndarray, np.ndarray]):
    """A dm_control suite task as a Gymnasium env.

    Observations: pixels ``Box(0, 255, (H, W, C), uint8)`` (``C`` 3, or 1 when grayscale, by BT.601
    luminance) from camera ``camera``, or state ``Box(-inf, inf, (D,), float32)``: the task's observation
    arrays flattened and concatenated in the observation dict's order. Actions: ``Box(min, max, (A,),
    float32)`` from the action spec. Rewards are summed over the ``action_repeat`` control steps of an agent
    step. An episode ends where the dm_env time step is last: ``terminated`` if its discount is 0, else
    ``truncated``. ``render()`` (``render_mode="rgb_array"``) gives a ``(256, 256, 3)`` ``uint8`` frame of the
    same camera (``RENDER_SIZE``).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        obs_type: str = "pixels",
        size: tuple[int, int] = (64, 64),
        grayscale: bool = False,
        action_repeat: int = 1,
        camera: int | None = 0,
        render_mode: str | None = None,
        task_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if obs_type not in ("pixels", "state"):
            raise ValueError(f"obs_type {obs_type!r} is unknown: use 'pixels' or 'state'")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"render_mode {render_mode!r} is not supported by dmc envs: use None or 'rgb_array'"
            )
        if action_repeat < 1:
            raise ValueError(f"action_repeat {action_repeat} must be >= 1")
        self.domain, self.task = domain, task
        self.obs_type, self.size, self.grayscale = obs_type, (int(size[0]), int(size[1])), grayscale
        self.action_repeat = action_repeat
        self.camera_id = 0 if camera is None else int(camera)
        self.render_mode = render_mode
        kwargs: dict[str, Any] = {"time_limit": float("inf")}
        kwargs.update(task_kwargs or {})
        self._env = _suite().load(domain, task, task_kwargs=kwargs)
        self._physics: Any = None
        self._camera: Any = None
        self._render_camera: Any = None
        self._prepare_physics()

        control_dt = float(self._env.control_timestep())
        self.metadata = {**self.metadata, "render_fps": round(1.0 / (control_dt * action_repeat))}
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(
            low=np.asarray(spec.minimum, np.float32).reshape(spec.shape),
            high=np.asarray(spec.maximum, np.float32).reshape(spec.shape),
            dtype=np.float32,
        )
        self._action_shape = tuple(spec.shape)
        if obs_type == "pixels":
            channels = 1 if grayscale else 3
            self.observation_space = gym.spaces.Box(0, 255, (*self.size, channels), np.uint8)
        else:
            dims = sum(int(np.prod(a.shape)) for a in self._env.observation_spec().values())
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dims,), np.float32)

    @classmethod
    def from_spec(cls, spec: EnvSpec, render_mode: str | None = None) -> DMCEnv:
        """The env of a dmc ``spec`` (``spec.kwargs`` go to the dm_control task function)."""
        if spec.suite != "dmc":
            raise ValueError(f"DMCEnv needs a dmc spec, got {spec.id}")
        domain, task = resolve_task(spec.name)
        if "random" in spec.kwargs:
            raise ValueError(f"{spec.id}: kwargs key 'random' is set by wmsim: seed with reset(seed=...)")
        return cls(
            domain,
            task,
            obs_type=spec.obs_type,
            size=spec.size,
            grayscale=spec.grayscale,
            action_repeat=spec.action_repeat,
            camera=spec.camera,
            render_mode=render_mode,
            task_kwargs=spec.kwargs,
        )

    def __str__(self) -> str:
        return f"<DMCEnv<dmc/{self.domain}-{self.task}>>"

    @property
    def dm_env(self) -> Any:
        """The underlying ``dm_control.rl.control.Environment``."""
        return self._env

    @property
    def physics(self) -> Any:
        """The task's ``dm_control`` physics."""
        return self._env.physics

    # -- rendering ----------------------------------------------------------------------------------------
    def _prepare_physics(self) -> None:
        """Fast-rendering settings and fresh cameras whenever the physics object changes."""
        physics = self._env.physics
        if physics is self._physics:
            return
        # Must happen before the physics makes its GL contexts (on the first camera).
        physics.model.vis.quality.offsamples = 0
        physics.model.light_castshadow[:] = 0
        self._physics = physics
        self._camera = None
        self._render_camera = None

    def _pixels(self) -> np.ndarray:
        if self._camera is None:
            from dm_control.mujoco import Camera

            self._camera = Camera(self._physics, self.size[0], self.size[1], self.camera_id)
        # The camera returns a view of its reused buffer: copy.
        image = np.array(self._camera.render(), dtype=np.uint8, copy=True)
        if self.grayscale:
            luma = image.astype(np.float32) @ _LUMA
            image = np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
        return image

    def _observation(self, time_step: Any) -> np.ndarray:
        if self.obs_type == "pixels":
            return self._pixels()
        parts = [np.asarray(v, np.float32).reshape(-1) for v in time_step.observation.values()]
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """A ``RENDER_SIZE`` ``(256, 256, 3)`` ``uint8`` RGB frame of the observation camera, or None when
        ``render_mode`` is None."""
        if self.render_mode is None:
            return None
        if self._render_camera is None:
            from dm_control.mujoco import Camera

            self._render_camera = Camera(self._physics, RENDER_SIZE[0], RENDER_SIZE[1], self.camera_id)
        return np.array(self._render_camera.render(), dtype=np.uint8, copy=True)

    # -- the Gymnasium API --------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` reseeds the task's random state (initial poses, targets)."""
        super().reset(seed=seed)
        if seed is not None:
            # dm_control suite tasks draw their randomness from ``task.random`` (``task._random``).
            self._env.task._random = np.random.RandomState(seed)
        time_step = self._env.reset()
        self._prepare_physics()
        return self._observation(time_step), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """One agent step: ``action (A,)`` for ``action_repeat`` control steps; the summed reward."""
        action = np.asarray(action, np.float64).reshape(self._action_shape)
        reward = 0.0
        time_step = None
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += float(time_step.reward or 0.0)
            if time_step.last():
                break
        assert time_step is not None
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        return self._observation(time_step), reward, terminated, truncated, {}

    def close(self) -> None:
        """Free the cameras and the physics' rendering contexts."""
        self._camera = None
        self._render_camera = None
        physics = self._physics
        if physics is not None:
            # Physics.free() would also free the simulation; drop only the GL contexts (remade on demand).
            with physics._contexts_lock:
                if physics._contexts:
                    physics._free_rendering_contexts()
        super().close()
