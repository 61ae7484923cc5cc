"""Open-loop evaluation of a world model on held-out real episodes (DreamerV2's figure 5 protocol).

From every cut point ``c`` of an episode (after at least ``context`` real steps) the model filters the
real observations up to ``c - 1``, then predicts ``horizon`` steps open loop from the real actions
alone (prior samples, no observations). Per horizon it reports the observation error (mean squared error
per element; images scaled to [0, 1]), the reward error (mean absolute error of the transformed reward)
and the termination accuracy, each next to a naive baseline: repeat the last observed observation and
reward, and predict that the episode never ends.

For images it also reports **object recall**: the mean squared error of a frame is dominated by its
background, so a model that draws the walls and paddles but never the ball scores well on it. Object
pixels are those at least ``OBJECT_THRESHOLD`` (on [0, 1]) away from the held-out episodes' median frame;
a prediction recalls one when it lies within a quarter of that distance of the real value (half
would let a uniform grey frame recall every object brighter than the background). Recall is pooled
over the object pixels of every window at a horizon, next to the same figure for repeating the last
frame (which recalls what does not move).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .world_model import OBJECT_THRESHOLD, WorldModel

#: A predicted object pixel counts as drawn within this fraction of its distance from the median frame.
OBJECT_TOLERANCE = 0.25

#: Regions ``(rows, columns)`` of 64x64 frames whose objects are scored on their own, per env id: in
#: Pong the ball is the only object between the paddles (columns 6-7 and 56-57) below the score.
REGIONS: dict[str, dict[str, tuple[slice, slice]]] = {
    "atari/Pong": {"ball": (slice(10, 59), slice(8, 56))},
}

#: A predicted (transformed) reward counts as a predicted event beyond this fraction of the real one.
EVENT_FRACTION = 0.5


@dataclass
class OpenLoopResult:
    """Per-horizon errors, index ``h - 1`` for horizon ``h``; NaN where no window reaches ``h``."""

    horizon: int
    context: int
    windows: int
    obs_mse: list[float]
    obs_mse_baseline: list[float]
    reward_mae: list[float]
    reward_mae_baseline: list[float]
    termination_acc: list[float]
    termination_acc_baseline: list[float]
    counts: list[int]
    object_recall: list[float] | None = None
    object_recall_baseline: list[float] | None = None
    #: Object recall inside named regions of the frame (:data:`REGIONS`, e.g. Pong's ``ball``).
    region_recall: dict[str, list[float]] | None = None
    region_recall_baseline: dict[str, list[float]] | None = None
    #: One step ahead over every real step (see :func:`one_step_events`).
    events: dict[str, float] | None = None

    def at(self, h: int) -> dict[str, float]:
        """All figures at horizon ``h`` (1-based)."""
        i = h - 1
        return {
            "obs_mse": self.obs_mse[i],
            "obs_mse_baseline": self.obs_mse_baseline[i],
            "reward_mae": self.reward_mae[i],
            "reward_mae_baseline": self.reward_mae_baseline[i],
            "termination_acc": self.termination_acc[i],
            "termination_acc_baseline": self.termination_acc_baseline[i],
            "count": self.counts[i],
            **(
                {
                    "object_recall": self.object_recall[i],
                    "object_recall_baseline": self.object_recall_baseline[i],
                }
                if self.object_recall is not None and self.object_recall_baseline is not None
                else {}
            ),
        }

    def mean(self, upto: int | None = None) -> dict[str, float]:
        """Figures averaged over horizons ``1..upto`` (weighted by the number of windows)."""
        n = np.asarray(self.counts[:upto], float)
        out = {}
        for key in (
            "obs_mse",
            "obs_mse_baseline",
            "reward_mae",
            "reward_mae_baseline",
            "termination_acc",
            "termination_acc_baseline",
        ):
            values = np.nan_to_num(np.asarray(getattr(self, key)[:upto], float))
            out[key] = float((values * n).sum() / max(n.sum(), 1.0))
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def _pad(episodes: list[dict[str, np.ndarray]], key: str, length: int) -> np.ndarray:
    first = episodes[0][key]
    out = np.zeros((len(episodes), length, *first.shape[1:]), first.dtype)
    for i, episode in enumerate(episodes):
        out[i, : len(episode[key])] = episode[key]
    return out


@torch.no_grad()
def open_loop(
    model: WorldModel,
    episodes: list[dict[str, np.ndarray]],
    context: int = 5,
    horizon: int = 50,
    stride: int = 5,
    return_predictions: bool = False,
    seed: int = 0,
    regions: dict[str, tuple[slice, slice]] | None = None,
) -> tuple[OpenLoopResult, dict[str, np.ndarray]]:
    """Evaluate ``model`` on ``episodes`` (arrays ``(T_i + 1, ...)`` from :func:`wmsim.data.rollout`).

    Latents are sampled, as in training (the mode of a broad categorical is not a typical state), from a
    generator seeded with ``seed`` so the figures are reproducible; the global RNG is left untouched.
    Returns the result and, if ``return_predictions``, the first window of every episode as arrays
    ``real (E, context + horizon, ...)`` / ``pred (E, horizon, ...)`` for pictures. ``regions``: named
    parts of the frame whose object recall is also reported on its own (see :data:`REGIONS`).
    """
    if context < 1 or horizon < 1:
        raise ValueError(f"context={context} and horizon={horizon} must be at least 1")
    devices = [next(model.parameters()).device] if next(model.parameters()).is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return _open_loop(model, episodes, context, horizon, stride, return_predictions, regions or {})


def _open_loop(
    model: WorldModel,
    episodes: list[dict[str, np.ndarray]],
    context: int,
    horizon: int,
    stride: int,
    return_predictions: bool,
    regions: dict[str, tuple[slice, slice]],
) -> tuple[OpenLoopResult, dict[str, np.ndarray]]:
    device = next(model.parameters()).device
    model.eval()
    lengths = [len(e["reward"]) for e in episodes]
    episodes = [e for e, n in zip(episodes, lengths, strict=True) if n > context]
    if not episodes:
        raise ValueError(f"no episode is longer than the context of {context} steps")
    lengths = [len(e["reward"]) for e in episodes]
    max_len = max(lengths)
    arrays = {key: _pad(episodes, key, max_len) for key in ("obs", "action", "reward", "is_terminal")}
    is_first = np.zeros((len(episodes), max_len), bool)
    is_first[:, 0] = True
    batch = {key: torch.as_tensor(value, device=device) for key, value in arrays.items()}
    embed = model.encode(batch["obs"])
    posts, _ = model.rssm.observe(
        embed, model.transition_input(batch["action"].float()), torch.as_tensor(is_first, device=device)
    )

    # Cut points: predict steps c .. c + horizon - 1 from the posterior at c - 1.
    cuts = [(i, c) for i, n in enumerate(lengths) for c in range(context, n, stride)]
    ep_idx = torch.as_tensor([i for i, _ in cuts], device=device)
    cut_idx = torch.as_tensor([c for _, c in cuts], device=device)
    start = posts.map(lambda t: t[ep_idx, cut_idx - 1])
    offsets = torch.arange(horizon, device=device)
    steps = (cut_idx[:, None] + offsets[None]).clamp(max=max_len - 1)  # (N, H)
    valid = (cut_idx[:, None] + offsets[None]) < torch.as_tensor(lengths, device=device)[ep_idx][:, None]
    actions = batch["action"].float()[ep_idx[:, None], steps]
    pred = model.rssm.imagine(start, model.transition_input(actions))
    feat = pred.feat
    pred_obs = model.obs_from_output(model.decode(feat))
    real_obs = batch["obs"][ep_idx[:, None], steps]
    last_obs = batch["obs"][ep_idx, cut_idx - 1][:, None].expand_as(real_obs)
    scale = 255.0 if model.io.image else 1.0
    dims = tuple(range(2, real_obs.dim()))
    obs_err = ((pred_obs.float() - real_obs.float()) / scale).pow(2).mean(dims)
    base_err = ((last_obs.float() - real_obs.float()) / scale).pow(2).mean(dims)
    real_reward = model.transform_reward(batch["reward"].float()[ep_idx[:, None], steps])
    last_reward = model.transform_reward(batch["reward"].float()[ep_idx, cut_idx - 1])[:, None]
    reward_err = (model.reward(feat) - real_reward).abs()
    reward_base = (last_reward - real_reward).abs()
    terminal = batch["is_terminal"][ep_idx[:, None], steps].bool()
    pred_terminal = model.continue_prob(feat) < 0.5
    term_acc = (pred_terminal == terminal).float()
    base_acc = (~terminal).float()

    mask = valid.float()
    counts = mask.sum(0)

    def per_h(values: torch.Tensor) -> list[float]:
        sums = (values * mask).sum(0)
        return [
            float(s / n) if n > 0 else float("nan") for s, n in zip(sums.cpu(), counts.cpu(), strict=True)
        ]

    result = OpenLoopResult(
        horizon=horizon,
        context=context,
        windows=len(cuts),
        obs_mse=per_h(obs_err),
        obs_mse_baseline=per_h(base_err),
        reward_mae=per_h(reward_err),
        reward_mae_baseline=per_h(reward_base),
        termination_acc=per_h(term_acc),
        termination_acc_baseline=per_h(base_acc),
        counts=[int(n) for n in counts.cpu()],
    )
    result.events = one_step_events(model, posts, batch, lengths)
    if model.io.image:
        steps_valid = np.arange(max_len)[None] < np.asarray(lengths)[:, None]
        background = torch.as_tensor(np.median(arrays["obs"][steps_valid], axis=0), device=device)
        result.object_recall = _pooled_recall(*object_hits(real_obs, pred_obs, background), mask)
        result.object_recall_baseline = _pooled_recall(*object_hits(real_obs, last_obs, background), mask)
        result.region_recall, result.region_recall_baseline = {}, {}
        for name, (rows, cols) in regions.items():

            def part(frames: torch.Tensor, rows: slice = rows, cols: slice = cols) -> torch.Tensor:
                return frames[:, :, rows, cols]

            real_part, back = part(real_obs), background[rows, cols]
            result.region_recall[name] = _pooled_recall(*object_hits(real_part, part(pred_obs), back), mask)
            result.region_recall_baseline[name] = _pooled_recall(
                *object_hits(real_part, part(last_obs), back), mask
            )
    pictures: dict[str, np.ndarray] = {}
    if return_predictions:
        first = [min(k for k, (i, _) in enumerate(cuts) if i == e) for e in range(len(episodes))]
        pictures = {
            "real": _window(arrays["obs"], [cuts[k] for k in first], context, horizon),
            "pred": pred_obs[first].cpu().numpy(),
            "valid": valid[first].cpu().numpy(),
        }
    return result, pictures


def one_step_events(
    model: WorldModel, posts: Any, batch: dict[str, torch.Tensor], lengths: list[int]
) -> dict[str, float]:
    """How often the model sees the events of real episodes coming, one step ahead: for every real step
    ``t >= 1``, the prior from the posterior at ``t - 1`` and the real action predicts its reward and
    its termination.

    - ``reward_up_recall`` / ``reward_down_recall``: of the steps with a positive (negative) reward
      (points won and lost in Pong), the share whose predicted transformed reward has the same sign and
      at least :data:`EVENT_FRACTION` of the real one's size; ``reward_false_alarm``: of the steps with
      zero reward, the share predicted beyond that size of the smallest real event.
    - ``termination_recall``: of the terminal steps, the share predicted to end (continue
      probability below 0.5); ``termination_false_alarm``: of the other steps, the share predicted to.
    Counts of each kind of step are included; a rate is NaN where there is no such step.
    """
    length = batch["reward"].shape[1]
    valid = (
        torch.arange(1, length, device=batch["reward"].device)[None]
        < torch.as_tensor(lengths, device=batch["reward"].device)[:, None]
    )
    prev = posts.map(lambda t: t[:, :-1].flatten(0, 1))
    state = model.rssm.img_step(prev, model.transition_input(batch["action"][:, 1:].float().flatten(0, 1)))
    feat = state.feat
    pred_reward = model.reward(feat).reshape(valid.shape)
    pred_end = (model.continue_prob(feat) < 0.5).reshape(valid.shape)
    real = model.transform_reward(batch["reward"][:, 1:].float())
    terminal = batch["is_terminal"][:, 1:].bool()
    up, down, zero = (real > 0) & valid, (real < 0) & valid, (real == 0) & valid
    smallest = real[up | down].abs().min() if bool((up | down).any()) else torch.tensor(1.0)
    bar = EVENT_FRACTION * real.abs()

    def rate(hit: torch.Tensor, among: torch.Tensor) -> float:
        count = int(among.sum())
        return float((hit & among).sum()) / count if count else float("nan")

    return {
        "reward_up_steps": int(up.sum()),
        "reward_up_recall": rate(pred_reward >= bar, up),
        "reward_down_steps": int(down.sum()),
        "reward_down_recall": rate(pred_reward <= -bar, down),
        "reward_false_alarm": rate(pred_reward.abs() >= EVENT_FRACTION * smallest, zero),
        "terminal_steps": int((terminal & valid).sum()),
        "termination_recall": rate(pred_end, terminal & valid),
        "termination_false_alarm": rate(pred_end, ~terminal & valid),
    }


def object_hits(
    real: torch.Tensor, pred: torch.Tensor, background: torch.Tensor, threshold: float = OBJECT_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Object pixels of uint8 frames ``real (N, H, *image)`` and how many of them ``pred`` recalls.

    ``background``: the median frame ``(*image)``. Returns ``(hits, objects)``, counts ``(N, H)``.
    """
    deviation = (real.float() - background.float()).abs() / 255.0
    objects = deviation > threshold
    recalled = (pred.float() - real.float()).abs() / 255.0 < OBJECT_TOLERANCE * deviation
    dims = tuple(range(2, real.dim()))
    return (objects & recalled).sum(dims).float(), objects.sum(dims).float()


def _pooled_recall(hits: torch.Tensor, objects: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """Pooled recall per horizon: hits over object pixels of the valid windows ``(N, H)``; NaN if none."""
    hits_h, objects_h = (hits * mask).sum(0), (objects * mask).sum(0)
    return [
        float(h / n) if n > 0 else float("nan") for h, n in zip(hits_h.cpu(), objects_h.cpu(), strict=True)
    ]


def _window(obs: np.ndarray, cuts: list[tuple[int, int]], context: int, horizon: int) -> np.ndarray:
    out = np.zeros((len(cuts), context + horizon, *obs.shape[2:]), obs.dtype)
    for k, (i, c) in enumerate(cuts):
        part = obs[i, c - context : c + horizon]
        out[k, : len(part)] = part
    return out


def write_open_loop_figure(
    pictures: dict[str, np.ndarray], path: str | Path, context: int, every: int = 5, rows: int = 4
) -> Path:
    """Write the DreamerV2-style open-loop figure: for each of ``rows`` episodes, the real frames
    (top), the model's open-loop frames (middle) and their difference (bottom); for vector observations,
    a plot of each state dimension, real against predicted. Returns the path of the PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    real, pred = pictures["real"][:rows], pictures["pred"][:rows]
    if real.ndim == 5:
        _image_strip(real, pred, path, context, every)
    else:
        _vector_plot(real, pred, pictures["valid"][:rows], path, context)
    return path


def _image_strip(real: np.ndarray, pred: np.ndarray, path: Path, context: int, every: int) -> None:
    import imageio.v3 as iio

    horizon = pred.shape[1]
    cols = list(range(0, horizon, every))
    blocks = []
    for r, p in zip(real, pred, strict=True):
        truth = np.concatenate([r[context + h] for h in cols], 1)
        model = np.concatenate([p[h] for h in cols], 1)
        error = np.abs(truth.astype(np.int16) - model.astype(np.int16)).astype(np.uint8)
        context_frames = np.concatenate([r[c] for c in range(context)], 1)
        blank = np.zeros_like(context_frames)
        block = np.concatenate(
            [
                np.concatenate([context_frames, truth], 1),
                np.concatenate([blank, model], 1),
                np.concatenate([blank, error], 1),
            ],
            0,
        )
        blocks.append(np.pad(block, ((0, 4), (0, 0), (0, 0)), constant_values=255))
    image = np.concatenate(blocks, 0)
    if image.shape[-1] == 1:
        image = image[..., 0]
    iio.imwrite(path, image)


def _vector_plot(real: np.ndarray, pred: np.ndarray, valid: np.ndarray, path: Path, context: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = real.shape[-1]
    rows = real.shape[0]
    fig, axes = plt.subplots(rows, dims, figsize=(2.6 * dims, 2.0 * rows), squeeze=False)
    horizon = pred.shape[1]
    for r in range(rows):
        n = int(valid[r].sum())
        for d in range(dims):
            ax = axes[r][d]
            ax.plot(range(-context + 1, n + 1), real[r, : context + n, d], "k-", label="real")
            ax.plot(range(1, n + 1), pred[r, :n, d], "r--", label="model (open loop)")
            ax.axvline(0.5, color="gray", lw=0.5)
            ax.set_xlim(-context + 1, horizon)
            if r == 0:
                ax.set_title(f"state[{d}]")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("open-loop prediction from real actions (left of the line: context)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def format_table(result: OpenLoopResult, horizons: tuple[int, ...] = (1, 5, 15, 50)) -> str:
    """A small text table of the figures at a few horizons, and the one-step events under it."""
    regions = result.region_recall or {}
    lines = [
        f"{'horizon':>7} {'windows':>7} {'obs mse':>10} {'(repeat)':>10} {'rew mae':>9} {'(repeat)':>9}"
        f" {'term acc':>8} {'(never)':>8}"
        + (f" {'objects':>8} {'(repeat)':>8}" if result.object_recall is not None else "")
        + "".join(f" {name:>8} {'(repeat)':>8}" for name in regions)
    ]
    for h in horizons:
        if h > result.horizon or result.counts[h - 1] == 0:
            continue
        f = result.at(h)
        lines.append(
            f"{h:>7} {f['count']:>7} {f['obs_mse']:>10.5f} {f['obs_mse_baseline']:>10.5f}"
            f" {f['reward_mae']:>9.4f} {f['reward_mae_baseline']:>9.4f}"
            f" {f['termination_acc']:>8.3f} {f['termination_acc_baseline']:>8.3f}"
            + (
                f" {f['object_recall']:>8.3f} {f['object_recall_baseline']:>8.3f}"
                if "object_recall" in f
                else ""
            )
            + "".join(
                f" {values[h - 1]:>8.3f} {(result.region_recall_baseline or {})[name][h - 1]:>8.3f}"
                for name, values in regions.items()
            )
        )
    if result.events:
        e = result.events
        lines.append(
            f"one step ahead: rewards > 0 seen {e['reward_up_recall']:.2f} ({e['reward_up_steps']} steps),"
            f" < 0 seen {e['reward_down_recall']:.2f} ({e['reward_down_steps']}), false alarms"
            f" {e['reward_false_alarm']:.3f}; terminations seen {e['termination_recall']:.2f}"
            f" ({e['terminal_steps']}), false alarms {e['termination_false_alarm']:.3f}"
        )
    return "\n".join(lines)
