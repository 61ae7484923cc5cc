"""Model cards for bundles, written with ``huggingface_hub``'s card tooling (no torch needed).

The card (``README.md`` in the bundle) carries metadata the Hub indexes (``license``,
``pipeline_tag: reinforcement-learning``, ``library_name: wmsim``, tags, and the model's own results in
``model-index`` as Stable-Baselines3's Hub packages report them: real-env returns of policies trained in
this model's dream, baselines such as a random policy only in the text), a usage snippet that works,
how the model was trained, and its measured figures, read from files in the bundle:

- ``openloop.json`` (``wmsim evaluate``): open-loop fidelity against horizon on held-out real episodes;
- ``transfer.json`` (``wmsim eval --record``): real-env returns of policies trained in the dream;
- ``dream_vs_real.gif`` / ``openloop.png``: shown when present.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .bundle_format import CARD_FILE, read_bundle_config
from .fileio import atomic_write_json, atomic_write_text

OPENLOOP_FILE = "openloop.json"
TRANSFER_FILE = "transfer.json"
MEDIA_FILES = ("dream_vs_real.gif", "openloop.png")
HORIZONS = (1, 5, 15, 50)
LICENSE = "mit"  # wmsim's own licence, under which the bundles it writes are published
#: ``transfer.json`` keys of baselines: shown in the card's text, not reported as the model's results.
BASELINES = ("random",)


def env_id_of(config: dict[str, Any]) -> str:
    """The real env id as ``wmsim.make_env`` takes it: ``atari/Pong``, ``dmc/cartpole-swingup``, ..."""
    env = config["env"]
    return env["name"] if env["suite"] == "gym" else f"{env['suite']}/{env['name']}"


def record_transfer(
    directory: str | os.PathLike,
    key: str,
    label: str,
    returns: list[float],
    command: str = "",
    seed: int | None = None,
    task: str | None = None,
) -> Path:
    """Add (or replace) one policy's real-env returns in the bundle's ``transfer.json`` (``task``: the
    task of a multi-task model they were played in)."""
    path = Path(directory) / TRANSFER_FILE
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"results": {}}
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
    data["results"][key] = {
        "label": label,
        "mean": mean,
        "std": std,
        "episodes": len(returns),
        "returns": [float(r) for r in returns],
        "seed": seed,
        "command": command,
        **({"task": task} if task else {}),
    }
    atomic_write_text(path, json.dumps(data, indent=2))
    return path


def store_commands(directory: str | os.PathLike, commands: list[str]) -> None:
    """Record the command lines that reproduce a bundle in its ``config.json`` (``info.commands``)."""
    path = Path(directory) / "config.json"
    config = read_bundle_config(directory)
    config.setdefault("info", {})["commands"] = list(commands)
    atomic_write_json(path, config)


def usage_snippet(
    name: str | None, repo_id: str | None, env_id: str, local: str | None = None, task: str | None = None
) -> str:
    """Python that makes this model's dream with Gymnasium and steps it (``task``: one task of a
    multi-task model)."""
    extra = f', task="{task}"' if task else ""
    if name:
        make = f'env = gym.make("wmsim/{name}-dream"{extra})'
        vec = f'vec = gym.make_vec("wmsim/{name}-dream", num_envs=256{extra})'
    else:
        source = repo_id or local or "path/to/bundle"
        make = f'env = gym.make("wmsim/Dream", model="{source}"{extra})'
        vec = f'vec = gym.make_vec("wmsim/Dream", num_envs=256, model="{source}"{extra})'
    if task:
        env_id = f"task {task}"
    return "\n".join(
        [
            "import gymnasium as gym",
            "import wmsim  # registers the wmsim/... ids",
            "",
            f"{make}  # a dream of {env_id}",
            "obs, info = env.reset(seed=0)",
            "obs, reward, terminated, truncated, info = env.step(env.action_space.sample())",
            *(
                ["# batched, on the GPU when there is one", vec]
                if task
                else [f"{vec}  # batched, on the GPU when there is one"]
            ),
        ]
    )


def build_card(
    directory: str | os.PathLike,
    name: str | None = None,
    repo_id: str | None = None,
    *,
    location: str | os.PathLike | None = None,
) -> Any:
    """The :class:`huggingface_hub.ModelCard` of a bundle directory. ``location``: where the bundle will
    live when ``directory`` is a temporary folder it is being written in (the card names it)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    path = Path(directory)
    shown = Path(location) if location is not None else path
    config = read_bundle_config(path)
    env_id = env_id_of(config)
    name = name or config.get("info", {}).get("name")
    openloop = _read_json(path / OPENLOOP_FILE)
    transfer = _read_json(path / TRANSFER_FILE)
    eval_results = [
        EvalResult(
            task_type="reinforcement-learning",
            task_name="reinforcement-learning",
            dataset_type=_result_env(result, config, env_id),
            dataset_name=_result_env(result, config, env_id),
            metric_type="mean_reward",
            metric_name=f"mean_reward ({result['label']})",
            metric_value=f"{result['mean']:.2f} +/- {result['std']:.2f}",
        )
        for key, result in (transfer or {}).get("results", {}).items()
        if key.rsplit("/", 1)[-1] not in BASELINES
    ]
    data = ModelCardData(
        license=LICENSE,
        pipeline_tag="reinforcement-learning",
        library_name="wmsim",
        tags=[
            "world-model",
            "dreamerv2",
            "reinforcement-learning",
            "gymnasium",
            env_id.replace("/", "-"),
        ],
        model_name=name or repo_id or shown.name,
        eval_results=eval_results or None,
    )
    tasks = config.get("tasks") or []
    first_task = tasks[0]["name"] if tasks else None
    if tasks:
        ids = [env_id_of(task) for task in tasks]
        data.tags = [*(data.tags or [])[:-1], "multi-task", *(t.replace("/", "-") for t in ids)]
        env_id = f"{len(tasks)} tasks ({', '.join(ids)})"
    sections = [
        f"# {name or repo_id or shown.name}: a"
        + (" multi-task" if tasks else "")
        + f" DreamerV2 world model of {env_id}",
        "A discrete world model (RSSM with"
        f" {config['model']['rssm']['stoch']}x{config['model']['rssm']['classes']} categorical latents)"
        f" of {env_id if tasks else f'`{env_id}`'}, packaged as a wmsim bundle: a Gymnasium environment"
        " that steps in latent space,"
        " batched on a GPU or CPU.",
        "## Usage\n\n```python\n" + usage_snippet(name, repo_id, env_id, str(shown), first_task) + "\n```",
        _tasks_section(tasks, config.get("info", {}).get("dataset")),
        _model_section(config),
        _training_section(config),
        _fidelity_section(openloop),
        _transfer_section(transfer, env_id),
        _media_section(path),
        "## Files\n\n`config.json` (format, env, spaces, model config), `model.safetensors` (weights),"
        " `start_states.safetensors` (posterior states of real episode starts)"
        + (", `policy.safetensors` (a policy that plays the dream)" if "policy" in config else "")
        + ". Loading is safetensors + JSON only: nothing is unpickled.",
    ]
    body = "\n\n".join(section for section in sections if section)
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body + "\n")


def write_card(
    directory: str | os.PathLike,
    name: str | None = None,
    repo_id: str | None = None,
    *,
    location: str | os.PathLike | None = None,
) -> Path:
    """Write (or refresh) the bundle's ``README.md`` card; returns its path (``location``: see
    :func:`build_card`)."""
    path = Path(directory) / CARD_FILE
    card = build_card(directory, name=name, repo_id=repo_id, location=location)
    atomic_write_text(path, str(card))
    return path


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _tasks_section(tasks: list[dict[str, Any]], dataset: Any = None) -> str:
    """A table of a multi-task model's tasks: name, real env, spaces (pass ``task=NAME``) and, where the
    bundle records its dataset, each task's data: steps, behaviour and mean episode return."""
    if not tasks:
        return ""
    data = dataset.get("tasks", {}) if isinstance(dataset, dict) else {}
    rows = [
        "| task | env | observation | action | data steps | data behaviour | data return |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        obs, action = task["spaces"]["observation"], task["spaces"]["action"]
        record = data.get(task["name"], {})
        mean = record.get("episode_return_mean")
        rows.append(
            f"| `{task['name']}` | `{env_id_of(task)}` | vector {tuple(obs.get('shape', []))} |"
            f" continuous ({(action.get('shape') or ['?'])[0]}) | {record.get('steps', '')} |"
            f" {record.get('behaviour', '')} | {'' if mean is None else f'{mean:.1f}'} |"
        )
    return (
        "## Tasks\n\nOne model for every task below: observations and actions are zero-padded to the"
        " largest and a learned task embedding conditions the encoder, the transition and the heads."
        " A dream is made for one task (`task=NAME`) and speaks its real spaces.\n\n" + "\n".join(rows)
    )


def _model_section(config: dict[str, Any]) -> str:
    rssm, io = config["model"]["rssm"], config["io"]
    obs = f"{'image' if io['image'] else 'vector'} {tuple(io['obs_shape'])}"
    action = f"{'discrete' if io['discrete'] else 'continuous'} ({io['action_size']})"
    return (
        "## Model\n\n"
        f"| observation | action | deter | stoch | weights |\n|---|---|---|---|---|\n"
        f"| {obs} | {action} | {rssm['deter']} | {rssm['stoch']}x{rssm['classes']} |"
        f" {config.get('weights_dtype', 'float32')} |"
    )


def _training_section(config: dict[str, Any]) -> str:
    info = config.get("info", {})
    parts = ["## Training"]
    if info.get("recipe"):
        parts.append(f"Recipe: {info['recipe']}.")
    if info.get("commands"):
        parts.append("Reproduce with:\n\n```bash\n" + "\n".join(info["commands"]) + "\n```")
    facts = [
        f"- {label}: {info[key]}"
        for key, label in (
            ("env_steps", "real env steps"),
            ("updates", "world-model updates"),
            ("seed", "seed"),
            ("hardware", "hardware"),
            ("wall_clock", "wall-clock"),
        )
        if key in info
    ]
    pretrain = info.get("pretrain_config")
    if isinstance(pretrain, dict) and pretrain.get("init_from"):
        facts.append(f"- started from the world model of `{pretrain['init_from']}` (fine-tuning)")
    if isinstance(pretrain, dict) and pretrain.get("start_context"):
        facts.append(
            f"- start states: after {pretrain['start_context']} real steps at random points of the"
            " dataset's episodes (dreams begin mid-episode)"
        )
    dataset = info.get("dataset")
    if isinstance(dataset, dict) and "steps" in dataset:
        facts.append(
            f"- offline dataset: {dataset['steps']} steps, {dataset.get('episodes')} episodes,"
            f" behaviour {dataset.get('behaviour')}, mean episode return"
            f" {dataset.get('episode_return_mean', float('nan')):.2f}"
        )
        for added in dataset.get("additions", []):
            facts.append(
                f"- added after update {added.get('after_update')}: {added.get('steps')} real steps of the"
                f" dream-trained policy (random action with probability {added.get('epsilon')}),"
                f" {added.get('episodes')} episodes, mean return {added.get('episode_return_mean', 0.0):.2f}"
            )
    if "dream_training" in info:
        dream = info["dream_training"]
        if dream.get("learner") == "pwm":
            task = f" for task {dream['task']}" if dream.get("task") else ""
            facts.append(
                f"- policy: PWM first-order actor{task}, {dream.get('updates')} updates inside the dream"
            )
        else:
            facts.append(f"- policy: DreamerV2 actor-critic, {dream.get('updates')} updates inside the dream")
    parts.append("\n".join(facts) if facts else "No training record in the bundle.")
    return "\n\n".join(parts)


def _fidelity_section(openloop: dict[str, Any] | None) -> str:
    if not openloop:
        return "## Fidelity\n\nNot measured yet: `wmsim evaluate BUNDLE` writes `openloop.json`."
    if "tasks" in openloop:
        return _task_fidelity_section(openloop["tasks"])
    objects = openloop.get("object_recall") is not None
    header = "| horizon | obs MSE | repeat-last | reward MAE | repeat-last | termination acc. | repeat-last |"
    if objects:
        header += " object recall | repeat-last |"
    rows = [header, "|---" * (header.count("|") - 1) + "|"]
    for h in HORIZONS:
        if h > openloop["horizon"] or openloop["counts"][h - 1] == 0:
            continue
        i = h - 1
        row = (
            f"| {h} | {openloop['obs_mse'][i]:.4g} | {openloop['obs_mse_baseline'][i]:.4g} |"
            f" {openloop['reward_mae'][i]:.3g} | {openloop['reward_mae_baseline'][i]:.3g} |"
            f" {openloop['termination_acc'][i]:.3f} | {openloop['termination_acc_baseline'][i]:.3f} |"
        )
        if objects:
            row += f" {openloop['object_recall'][i]:.3f} | {openloop['object_recall_baseline'][i]:.3f} |"
        rows.append(row)
    note = (
        "\n\nObject recall: the share of object pixels (those away from the median frame, such as a ball"
        " or a paddle) that the prediction draws within a quarter of their contrast."
        if objects
        else ""
    )
    return (
        "## Fidelity\n\nOpen-loop predictions on held-out real episodes"
        f" ({openloop['windows']} windows, {openloop['context']} context steps), against repeating the"
        " last observation and reward:\n\n" + "\n".join(rows) + note
    )


def _task_fidelity_section(tasks: dict[str, Any]) -> str:
    """Open-loop errors of a multi-task model, a row per task (``wmsim evaluate BUNDLE --task T``)."""
    shown = [h for h in (1, 5, 15) if all(h <= r["horizon"] for r in tasks.values())]
    cells = " | ".join(f"obs MSE {h} (repeat-last)" for h in shown)
    rows = [
        f"| task | windows | {cells} | reward MAE {shown[-1] if shown else ''} (repeat-last) |",
        "|---" * (3 + len(shown)) + "|",
    ]
    for name, r in tasks.items():
        mse = " | ".join(f"{r['obs_mse'][h - 1]:.4g} ({r['obs_mse_baseline'][h - 1]:.4g})" for h in shown)
        last = shown[-1] - 1 if shown else 0
        rows.append(
            f"| `{name}` | {r['windows']} | {mse} |"
            f" {r['reward_mae'][last]:.3g} ({r['reward_mae_baseline'][last]:.3g}) |"
        )
    return (
        "## Fidelity\n\nOpen-loop predictions on held-out real episodes of each task, against repeating"
        " the last observation and reward (steps ahead in the column names):\n\n" + "\n".join(rows)
    )


#: What the DreamerV2 paper (Hafner et al., 2021) reports on the same task, to quote beside our figures.
#: DreamerV2 learns online; an offline-pretrained model's real steps are those of its dataset.
PUBLISHED_SCORES: dict[str, str] = {
    "atari/Pong": "DreamerV2 paper, Pong (mean of 11 seeds, by environment frames; 4 frames per agent step):"
    " -18.8 at 1M, -9.3 at 2M, -0.7 at 3M, +11.5 at 5M, +17.6 at 10M, +19.6 at 50M. A random policy"
    " scores -20.7.",
    "dmc/cartpole-swingup": "DreamerV2 paper, cartpole_swingup from pixels (5 seeds): 387 at about 100k"
    " environment steps, 853 at 500k, 865 at 1M (the maximum is 1000).",
    "dmc/walker-walk": "DreamerV2 paper, walker_walk from pixels (5 seeds): 408 at about 100k environment"
    " steps, 935 at 500k, 956 at 1M (the maximum is 1000).",
}


def _result_env(result: dict[str, Any], config: dict[str, Any], default: str) -> str:
    """The real env a ``transfer.json`` result was played in: its task's env, or the bundle's."""
    for task in config.get("tasks") or []:
        if task["name"] == result.get("task"):
            return env_id_of(task)
    return default


def _transfer_section(transfer: dict[str, Any] | None, env_id: str = "") -> str:
    results = (transfer or {}).get("results", {})
    if any("task" in result for result in results.values()):
        return _task_transfer_section(results)
    published = f"\n\n{PUBLISHED_SCORES[env_id]}" if env_id in PUBLISHED_SCORES else ""
    if not results:
        return (
            "## Transfer\n\nNot measured yet: `wmsim eval BUNDLE --record KEY` writes `transfer.json`."
            + published
        )
    rows = ["| policy | real-env return | episodes | command |", "|---|---|---|---|"]
    for result in results.values():
        command = f"`{result['command']}`" if result.get("command") else ""
        rows.append(
            f"| {result['label']} | {result['mean']:.2f} +/- {result['std']:.2f} | {result['episodes']} |"
            f" {command} |"
        )
    table = "\n".join(rows)
    baselines = [results[key]["label"] for key in BASELINES if key in results]
    note = (
        f"\n\nBaselines for comparison, not results of this model (nor in its `model-index`):"
        f" {', '.join(baselines)}."
        if baselines
        else ""
    )
    return f"## Transfer\n\nReturns in the real environment (seeded episodes):\n\n{table}{note}{published}"


def _task_transfer_section(results: dict[str, Any]) -> str:
    """The real-env returns of a multi-task model's policies, task by task (results keyed
    ``TASK/KEY``), baselines beside them."""
    rows = ["| task | policy | real-env return | episodes | command |", "|---|---|---|---|---|"]
    for result in sorted(results.values(), key=lambda r: r.get("task", "")):
        command = f"`{result['command']}`" if result.get("command") else ""
        rows.append(
            f"| `{result.get('task', '')}` | {result['label']} | {result['mean']:.2f} +/- {result['std']:.2f}"
            f" | {result['episodes']} | {command} |"
        )
    return (
        "## Transfer\n\nReturns in each task's real environment (seeded episodes); the random policy is a"
        " baseline, not a result of this model (nor in its `model-index`):\n\n" + "\n".join(rows)
    )


def _media_section(path: Path) -> str:
    shown = [f"![{name}]({name})" for name in MEDIA_FILES if (path / name).is_file()]
    return "## Dream vs real\n\n" + "\n\n".join(shown) if shown else ""
