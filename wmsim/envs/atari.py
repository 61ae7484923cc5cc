"""Atari 2600 games through ale-py's ``ALE/<Game>-v5`` envs and Gymnasium's ``AtariPreprocessing``.

The DreamerV2 protocol: raw frames (``frameskip=1`` in ALE), sticky actions with probability
``spec.sticky_actions`` per frame, up to ``spec.noop_max`` random no-op frames after reset, then
``AtariPreprocessing`` repeats each action ``spec.action_repeat`` frames (summing rewards), max-pools the last
two frames and resizes with OpenCV's area interpolation to ``spec.size``, grayscale ``(H, W, 1)`` or RGB
``(H, W, 3)`` ``uint8``. ALE's own frame limit is switched off: the episode length is ``spec.time_limit``
agent steps (applied by :func:`wmsim.envs.make_env`).
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

import gymnasium as gym

from .spec import EnvSpec

# Env kwargs that EnvSpec fields control; giving them in spec.kwargs would break the protocol.
_CONTROLLED = {
    "frameskip": "action_repeat",
    "repeat_action_probability": "sticky_actions",
    "render_mode": "make_env(render_mode=...)",
    "obs_type": "obs_type / grayscale",
    "game": "the id (atari/<Game>)",
}


@functools.cache
def atari_games() -> dict[str, str]:
    """``{game name: ALE ROM id}`` for every ``ALE/<Game>-v5`` env whose ROM ale-py has, e.g.
    ``{"Pong": "pong", "MsPacman": "ms_pacman", ...}``."""
    import ale_py
    import ale_py.roms

    gym.register_envs(ale_py)
    roms = set(ale_py.roms.get_all_rom_ids())
    games = {}
    for spec in gym.registry.values():
        if spec.namespace == "ALE" and spec.version == 5:
            rom = str(spec.kwargs.get("game", ""))
            if rom in roms:
                games[spec.name] = rom
    return dict(sorted(games.items()))


def resolve_game(name: str) -> str:
    """The canonical game name (``"Pong"``) for a game name or ROM id (``"pong"``, ``"ms_pacman"``).

    Raises ``ValueError`` listing close matches for unknown games."""
    games = atari_games()
    if name in games:
        return name
    folded = {key.lower(): key for key in games}
    folded.update({rom.replace("_", ""): key for key, rom in games.items()})
    key = name.lower().replace("_", "").replace(" ", "")
    if key in folded:
        return folded[key]
    close = difflib.get_close_matches(name, list(games), n=3, cutoff=0.6)
    close += [folded[k] for k in difflib.get_close_matches(key, list(folded), n=3, cutoff=0.6)]
    suggestion = f" Did you mean {' or '.join(dict.fromkeys(close))}?" if close else ""
    raise ValueError(
        f"unknown Atari game {name!r}.{suggestion} Ids look like atari/<Game> with the ALE v5 game name in "
        f"CamelCase, e.g. atari/Pong, atari/Breakout, atari/MsPacman, atari/SpaceInvaders ({len(games)} "
        "games: the ROM ids in ale_py.roms.get_all_rom_ids())"
    )


def make_atari(spec: EnvSpec, render_mode: str | None = None) -> gym.Env[Any, Any]:
    """The preprocessed Atari env of ``spec`` (without the time limit and step flags of ``make_env``).

    Observations ``(H, W, 1)`` (grayscale) or ``(H, W, 3)`` ``uint8``; actions ``Discrete(n)`` (the game's
    minimal action set). ``render()`` with ``render_mode="rgb_array"`` gives the raw ``(210, 160, 3)``
    frame."""
    if spec.suite != "atari":
        raise ValueError(f"make_atari needs an atari spec, got {spec.id}")
    game = resolve_game(spec.name)
    for key in spec.kwargs:
        if key in _CONTROLLED:
            raise ValueError(f"{spec.id}: kwargs key {key!r} is set by wmsim: use {_CONTROLLED[key]} instead")
    make_kwargs: dict[str, Any] = {
        "frameskip": 1,
        "repeat_action_probability": spec.sticky_actions,
        "full_action_space": False,
        "max_num_frames_per_episode": 0,  # 0: no ALE frame limit; spec.time_limit rules
        "render_mode": render_mode,
    }
    make_kwargs.update(spec.kwargs)
    env = gym.make(f"ALE/{game}-v5", **make_kwargs)
    height, width = spec.size
    return gym.wrappers.AtariPreprocessing(
        env,
        noop_max=spec.noop_max,
        frame_skip=spec.action_repeat,
        screen_size=(width, height),  # OpenCV order: (width, height)
        terminal_on_life_loss=spec.life_loss_terminal,
        grayscale_obs=spec.grayscale,
        grayscale_newaxis=True,
        scale_obs=False,
    )
