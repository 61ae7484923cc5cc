"""A single-env ``gymnasium.Env`` view of a dream (what ``gym.make("wmsim/<Name>-dream")`` returns)."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..bundle import Bundle
from .single import SingleDreamEnv
from .vector_env import DreamVectorEnv


class DreamEnv(SingleDreamEnv):
    """One dreamed episode at a time: a :class:`DreamVectorEnv` of one sub-env without autoreset.

    Takes the same keyword arguments as :class:`DreamVectorEnv` (``model``, ``device``, ``obs_mode``,
    ``dtype``, ``time_limit``, ``termination``, ``render_mode``, ``seed``). Actions are the real env's:
    an int for a discrete model, a float32 array ``(A,)`` for a continuous one.
    """

    def __init__(
        self, model: Bundle | str | os.PathLike, *, render_mode: str | None = None, **kwargs: Any
    ) -> None:
        vector = DreamVectorEnv(model, 1, autoreset="disabled", render_mode=render_mode, **kwargs)
        super().__init__(vector, render_mode)

    @property
    def bundle(self) -> Bundle:
        return self.vector.bundle

    @property
    def device(self) -> torch.device:
        return self.vector.device
