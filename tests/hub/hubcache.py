"""Tiny bundles, and a Hugging Face Hub cache in the Hub's own layout, as ``huggingface_hub`` writes it:
``models--owner--name/refs/<ref>`` holding a commit hash, ``snapshots/<hash>/<files>``."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch

from wmsim.bundle import encode_start_states, save_bundle
from wmsim.config import model_preset
from wmsim.envs import describe_spaces, env_spec_of, make_env
from wmsim.world_model import IOSpec, WorldModel


def make_bundle(directory: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny CartPole bundle (weights from ``seed``) saved in ``directory``."""
    env = make_env("CartPole-v1")
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    torch.manual_seed(seed)
    model = WorldModel(model_preset("tiny"), io)
    first = np.stack([env.reset(seed=i)[0] for i in range(4)])
    starts = encode_start_states(model, torch.as_tensor(first))
    return save_bundle(directory, model, env_spec_of(env), describe_spaces(env), starts, {"seed": seed})


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def add_snapshot(cache: Path, repo_id: str, source: Path, refs: tuple[str, ...] = ("main",)) -> str:
    """Copy the files of ``source`` into a new cached commit of ``repo_id``; point ``refs`` at it."""
    digest = hashlib.sha1()
    for file in sorted(source.rglob("*")):
        if file.is_file():
            digest.update(str(file.relative_to(source)).encode() + file.read_bytes())
    commit = digest.hexdigest()
    folder = repo_folder(cache, repo_id)
    shutil.copytree(source, folder / "snapshots" / commit, dirs_exist_ok=True)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (folder / "refs" / ref).write_text(commit)
    return commit
