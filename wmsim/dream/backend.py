"""The backend contract of the dream environments, and the episode logic every backend shares.

A backend holds ``num_envs`` latent states of one world model and steps them. The Gymnasium-facing
classes (:class:`~wmsim.dream.DreamVectorEnv`, :class:`~wmsim.dream.DreamEnv`,
:class:`~wmsim.dream.LatentObservation`, the SB3 adapter) exist once and talk to a backend only through
what :class:`DreamBackend` declares. Two backends implement it:

- ``"torch"``: :class:`~wmsim.dream.simulator.DreamSimulator` (tensors on a torch device, any dtype,
  gradients through steps on request);
- ``"onnxruntime"``: :class:`~wmsim.dream.ort.OrtSimulator` (numpy arrays and the bundle's exported
  ONNX graphs; no torch).

A backend implements the model-specific primitives on its own arrays (``feat``, ``decode``,
``posterior``, ``seed``, the start-state draw, the transition and the conversions to and from numpy).
What a dream *does* with them is written here, once, over the array namespace ``xp`` (``torch`` or
``numpy``, whose ``where``/``zeros_like``/comparison operators agree): reset (all, masked, per-env
seeds), reset from real observations, and the step's termination, time limit and the three autoreset
modes. No data-dependent Python branch sits in :meth:`DreamBackend.step`, so the torch backend never
synchronises with its device there.

Nothing here imports torch or onnxruntime: :func:`make_backend` imports the chosen one.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from gymnasium.vector import AutoresetMode

from .actions import check_time_limit

if TYPE_CHECKING:
    from ..onnx_format import ModelDims

BACKENDS = ("torch", "onnxruntime")
#: Options only the onnxruntime backend takes (the torch backend refuses them by name).
ORT_OPTIONS = ("providers", "onnx_dir", "threads")
#: Observation modes; ``"pixels"`` is the former name of ``"decoded"`` and still accepted.
OBS_MODES = ("latent", "decoded", "dict")
OBS_MODE_ALIASES = {"pixels": "decoded"}
TERMINATION_MODES = ("threshold", "sample")
AUTORESET_MODES = ("next_step", "same_step", "disabled")
_GYM_AUTORESET = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}

Array = Any  # a torch.Tensor on the backend's device, or a numpy array


def obs_mode_name(obs_mode: str) -> str:
    """The canonical name of an observation mode (``"pixels"`` -> ``"decoded"``)."""
    name = OBS_MODE_ALIASES.get(obs_mode, obs_mode)
    if name not in OBS_MODES:
        raise ValueError(
            f"obs_mode={obs_mode!r}: choose one of {OBS_MODES} ('pixels' is accepted for 'decoded')"
        )
    return name


def autoreset_name(mode: str | AutoresetMode) -> str:
    """``"next_step"``/``"same_step"``/``"disabled"`` for any spelling Gymnasium or wmsim uses: an
    :class:`~gymnasium.vector.AutoresetMode`, its value (``"NextStep"``, ...) or wmsim's name."""
    for name, gym_mode in _GYM_AUTORESET.items():
        if mode in (name, gym_mode, gym_mode.value):
            return name
    raise ValueError(
        f"autoreset mode {mode!r}: choose one of {AUTORESET_MODES} or a gymnasium.vector.AutoresetMode"
    )


def gym_autoreset_mode(mode: str | AutoresetMode) -> AutoresetMode:
    """The :class:`~gymnasium.vector.AutoresetMode` of any accepted spelling."""
    return _GYM_AUTORESET[autoreset_name(mode)]


def resolve_autoreset(
    autoreset: str | AutoresetMode | None, autoreset_mode: str | AutoresetMode | None
) -> str:
    """One autoreset mode from wmsim's ``autoreset=`` and Gymnasium's ``autoreset_mode=`` (default
    ``next_step``, Gymnasium's); both given and different is an error."""
    names = {autoreset_name(m) for m in (autoreset, autoreset_mode) if m is not None}
    if len(names) > 1:
        raise ValueError(
            f"autoreset={autoreset!r} and autoreset_mode={autoreset_mode!r} disagree: pass one of them"
        )
    return names.pop() if names else "next_step"


def check_num_envs(num_envs: Any) -> int:
    """``num_envs`` as an int, or a ValueError naming it."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs={num_envs!r} must be a positive integer")
    return int(num_envs)


def combined_seed(seeds: list[int]) -> int:
    """One 63-bit seed for the batch generator from the seeds of several sub-envs."""
    return int(np.random.SeedSequence(seeds).generate_state(1, np.uint64)[0] >> np.uint64(1))


class StepResult(NamedTuple):
    """One batched step, in the backend's arrays. ``reward (B,)`` float32, ``terminated``/``truncated``
    ``(B,)`` bool; ``final_feat (B, F)``: the features each env reached *before* a same-step reset
    (``autoreset="same_step"`` only; else None)."""

    reward: Array
    terminated: Array
    truncated: Array
    final_feat: Array | None


class DreamBackend(abc.ABC):
    """``num_envs`` dreamed episodes of one world model (see the module docstring).

    Attributes every backend sets: ``dims`` (:class:`~wmsim.onnx_format.ModelDims`: latent, action and
    observation sizes), ``spaces`` (the bundle's JSON observation and action spaces), ``bank_size``
    (start states), ``device``, and ``bundle`` (the loaded :class:`~wmsim.Bundle`, torch only; else
    None). ``elapsed (B,)`` counts steps since each env's reset; ``needs_reset (B,)`` marks envs whose
    episode ended (``next_step``: reset on the next step).
    """

    #: ``"torch"`` or ``"onnxruntime"``.
    name: str
    #: The array namespace of the backend's arrays (``torch`` or ``numpy``).
    xp: Any
    dims: ModelDims
    spaces: dict[str, Any]
    bank_size: int
    device: Any
    bundle: Any = None

    def __init__(self, num_envs: int, *, time_limit: int | None, termination: str, autoreset: str) -> None:
        check_num_envs(num_envs)
        if self.bank_size == 0:
            raise ValueError("the bundle holds no start states: it cannot start a dream")
        if termination not in TERMINATION_MODES:
            raise ValueError(f"termination={termination!r}: choose one of {TERMINATION_MODES}")
        self.num_envs = int(num_envs)
        self.termination = termination
        self.autoreset = autoreset_name(autoreset)
        self.time_limit = check_time_limit(time_limit)
        self.elapsed = self._zeros("int64")
        self.needs_reset = self._zeros("bool")

    # ------------------------------------------------------------------ what a backend implements
    @property
    @abc.abstractmethod
    def feat(self) -> Array:
        """Latent features ``(B, F)``: ``concat(deter, flat(one-hot stoch))``."""

    @abc.abstractmethod
    def decode(self, feat: Array | None = None) -> Array:
        """Decoded observations ``(B, *obs_shape)`` of ``feat`` (default: the current state) in the real
        env's format: uint8 images, or float32 vectors clipped to the real observation space."""

    @abc.abstractmethod
    def posterior(self, obs: Array, feat: Array | None = None, action: Array | None = None) -> Array:
        """Posterior features ``(B, F)`` of real observations ``obs (B, *obs_shape)`` after ``feat`` and
        ``action`` (indices ``(B,)`` or floats ``(B, A)``); ``feat=None`` starts an episode (the all-zero
        state). Samples with the backend's generator."""

    @abc.abstractmethod
    def seed(self, seed: int) -> None:
        """Re-seed the generator behind start draws, latent samples and sampled terminations."""

    @abc.abstractmethod
    def start_features(self) -> np.ndarray:
        """The bank of start states as features ``(N, F)`` float32 (numpy)."""

    @abc.abstractmethod
    def from_numpy(self, array: np.ndarray) -> Array:
        """A numpy array as the backend's array (on its device)."""

    @abc.abstractmethod
    def to_numpy(self, array: Array) -> np.ndarray:
        """A backend array as a numpy array the caller owns (low-precision floats become float32)."""

    @abc.abstractmethod
    def _zeros(self, dtype: str) -> Array:
        """``(B,)`` zeros of ``"int64"`` or ``"bool"``."""

    @abc.abstractmethod
    def _uniform(self) -> Array:
        """``(B,)`` uniform draws in [0, 1) from the backend's generator."""

    @abc.abstractmethod
    def _start(self, mask: Array, index: Array | None) -> None:
        """Set the states where ``mask (B,)`` is true to the bank's start states at ``index (B,)`` (drawn
        from the generator when None)."""

    @abc.abstractmethod
    def _set_feat(self, mask: Array, feat: Array) -> None:
        """Set the states where ``mask (B,)`` is true to the features ``feat (B, F)``."""

    @abc.abstractmethod
    def _transition(self, action: Array) -> tuple[Array, Array]:
        """Advance every state by the prior transition under ``action`` (indices ``(B,)`` or floats
        ``(B, A)``); returns ``(reward (B,) float32, continue probability (B,))``."""

    def prepare(self, *, step: bool = False, decode: bool = False, posterior: bool = False) -> None:
        """Load now what stepping, decoding or filtering will need, so that a missing piece is reported
        at construction rather than at the first step (a no-op where nothing loads lazily)."""
        return None

    # ------------------------------------------------------------------ shared episode logic
    def _all(self) -> Array:
        return ~self._zeros("bool")

    def _restarted(self, mask: Array) -> None:
        xp = self.xp
        self.elapsed = xp.where(mask, 0, self.elapsed)
        self.needs_reset = self.needs_reset & ~mask

    def reset(self, seed: int | list[int | None] | None = None, mask: Array | None = None) -> None:
        """Draw start states for every env (or where ``mask (B,)`` is true).

        ``seed``: an int re-seeds the batch generator; a list (one entry per env, ints or None) draws
        each env's start state from its own seed and re-seeds the batch generator from all of them, so
        that an env's first state depends on its seed alone. Later steps draw every env's noise from the
        one batch generator: a seed given here re-seeds it for all envs."""
        mask = self._all() if mask is None else mask
        if not isinstance(seed, (list, tuple)):
            if seed is not None:
                self.seed(int(seed))
            self._start(mask, None)
        else:
            known = [int(s) for s in seed if s is not None]
            if known:
                self.seed(combined_seed(known))
            seeded = np.array([s is not None for s in seed], bool)
            index = np.array(
                [np.random.default_rng(s).integers(self.bank_size) if s is not None else 0 for s in seed],
                np.int64,
            )
            seeded_b = self.from_numpy(seeded)
            self._start(mask & seeded_b, self.from_numpy(index))
            self._start(mask & ~seeded_b, None)
        self._restarted(mask)

    def reset_from_observation(self, obs: Array, mask: Array | None = None) -> None:
        """Start from real observations ``obs (B, *obs_shape)`` (env format), filtered through the
        posterior from the all-zero state (only where ``mask`` is true, if given)."""
        mask = self._all() if mask is None else mask
        self._set_feat(mask, self.posterior(obs))
        self._restarted(mask)

    def step(self, action: Array) -> StepResult:
        """Advance every env by one dreamed step: the prior transition, the reward head, termination from
        the discount head (``"threshold"``: continue probability < 0.5; ``"sample"``: a Bernoulli draw),
        truncation at ``time_limit`` steps, then the autoreset mode:

        - ``"next_step"`` (Gymnasium's default): an env that ended on the previous step starts afresh
          now, ignoring its action, with reward 0 and neither flag;
        - ``"same_step"``: an env that ends is reset in the same step; ``final_feat`` holds the state it
          reached;
        - ``"disabled"``: nothing resets by itself.
        """
        xp = self.xp
        reward, cont = self._transition(action)
        terminated = self._uniform() >= cont if self.termination == "sample" else cont < 0.5
        elapsed = self.elapsed + 1
        if self.time_limit is not None:
            truncated = (elapsed >= self.time_limit) & ~terminated
        else:
            truncated = xp.zeros_like(terminated)
        self.elapsed = elapsed
        if self.autoreset == "next_step":
            resetting = self.needs_reset
            self._start(resetting, None)
            self._restarted(resetting)
            reward = xp.where(resetting, 0.0, reward)
            terminated = terminated & ~resetting
            truncated = truncated & ~resetting
            self.needs_reset = terminated | truncated
            return StepResult(reward, terminated, truncated, None)
        if self.autoreset == "same_step":
            done = terminated | truncated
            final_feat = self.feat
            self._start(done, None)
            self._restarted(done)
            return StepResult(reward, terminated, truncated, final_feat)
        self.needs_reset = terminated | truncated
        return StepResult(reward, terminated, truncated, None)


def make_backend(backend: str, model: Any, num_envs: int, **kwargs: Any) -> DreamBackend:
    """The backend named ``backend`` for ``model`` (a :class:`~wmsim.Bundle`, a bundle directory, a
    registered or pretrained name, or a Hub repo id). Keyword arguments are the backend's: ``device``,
    ``dtype``, ``time_limit``, ``termination``, ``autoreset``, ``seed``, and for onnxruntime
    ``providers``, ``onnx_dir``, ``threads``."""
    if backend == "torch":
        given = sorted(set(kwargs) & set(ORT_OPTIONS))
        if given:
            raise TypeError(
                f"{given}: option(s) of backend='onnxruntime' only; drop them or pick that backend"
            )
        from .simulator import DreamSimulator

        return DreamSimulator(model, num_envs, **kwargs)
    if backend == "onnxruntime":
        from .ort import OrtSimulator

        return OrtSimulator(model, num_envs, **kwargs)
    raise ValueError(f"backend={backend!r}: choose one of {BACKENDS}")
