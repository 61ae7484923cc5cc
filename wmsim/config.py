"""Typed configuration of the DreamerV2 world model, with the paper's values as named presets.

Every config is a frozen dataclass that round-trips exactly through JSON (:func:`to_dict` /
:func:`from_dict`). The presets copy the official DreamerV2 configuration (``atari``, ``dmc_vision``,
``dmc_proprio``); ``atari_cpu`` and ``dmc_vision_cpu`` / ``dmc_proprio_cpu`` are the same setups sized for
two CPU cores; ``small`` and ``tiny`` are CPU sizes for quick runs and tests.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import numbers
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RSSMConfig:
    """Recurrent state-space model sizes (DreamerV2 section 2.1).

    The latent state is ``deter`` (GRU state, ``(B, deter)``) plus ``stoch`` categorical variables
    with ``classes`` classes each (one-hot, ``(B, stoch, classes)``).
    """

    deter: int = 600
    hidden: int = 600
    stoch: int = 32
    classes: int = 32
    norm_gru: bool = True

    def __post_init__(self) -> None:
        for name in ("deter", "hidden", "stoch", "classes"):
            check_at_least(name, getattr(self, name), 1)

    @property
    def stoch_size(self) -> int:
        """Length of the flattened one-hot stochastic state."""
        return self.stoch * self.classes

    @property
    def feat_size(self) -> int:
        """Length of the model-state features ``concat(deter, flat(stoch))``."""
        return self.deter + self.stoch_size

    @property
    def feat_segments(self) -> tuple[tuple[int, int], ...]:
        """The features' layout for :class:`wmsim.nn.SegmentLinear`: dense ``deter``, one-hot ``stoch``."""
        return ((self.deter, 0), (self.stoch_size, self.classes))


@dataclass(frozen=True)
class EncoderConfig:
    """Image encoder (CNN, stride 2, ELU) or vector encoder (MLP)."""

    cnn_depth: int = 48
    cnn_kernels: tuple[int, ...] = (4, 4, 4, 4)
    mlp_layers: int = 4
    mlp_units: int = 400

    def __post_init__(self) -> None:
        _check_network(self, min_layers=1)


@dataclass(frozen=True)
class DecoderConfig:
    """Transposed-CNN image decoder or MLP vector decoder, both unit-variance Gaussians."""

    cnn_depth: int = 48
    cnn_kernels: tuple[int, ...] = (5, 5, 6, 6)
    mlp_layers: int = 4
    mlp_units: int = 400

    def __post_init__(self) -> None:
        _check_network(self, min_layers=0)


@dataclass(frozen=True)
class HeadConfig:
    """An MLP head on the model-state features."""

    layers: int = 4
    units: int = 400

    def __post_init__(self) -> None:
        check_at_least("layers", self.layers, 0)
        check_at_least("units", self.units, 1)


def _check_network(config: EncoderConfig | DecoderConfig, min_layers: int) -> None:
    check_at_least("cnn_depth", config.cnn_depth, 1)
    check_at_least("mlp_layers", config.mlp_layers, min_layers)
    check_at_least("mlp_units", config.mlp_units, 1)
    if not config.cnn_kernels or not all(isinstance(k, int) and k >= 1 for k in config.cnn_kernels):
        raise ValueError(f"cnn_kernels={config.cnn_kernels!r} must be one or more integers >= 1")


@dataclass(frozen=True)
class LossConfig:
    """World-model loss weights and KL balancing (DreamerV2 equation 2 and algorithm 2).

    ``object_scale`` is not in the paper (1.0 leaves DreamerV2's loss unchanged): for image models it
    weights the squared error of *object pixels* (those where the target or the prediction lies at
    least ``OBJECT_THRESHOLD`` from the batch's median frame) by this factor, so that small moving
    objects (Pong's ball: about 3 of 4096 pixels) are not drowned by the static background.
    ``reward_event_scale`` is not in the paper either (1.0 leaves the loss unchanged): it weights the
    squared reward error of steps with a non-zero reward by this factor, so that sparse rewards (Pong's
    points: about 1 step in 100) are not drowned by the all-zero majority. The reported
    ``reward_loss`` stays the unweighted NLL.
    """

    kl_balance: float = 0.8
    kl_free: float = 0.0
    kl_scale: float = 0.1
    image_scale: float = 1.0
    reward_scale: float = 1.0
    discount_scale: float = 5.0
    object_scale: float = 1.0
    reward_event_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("object_scale", "reward_event_scale"):
            if not getattr(self, name) >= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r}: use 1.0 (DreamerV2) or more")


@dataclass(frozen=True)
class OptimConfig:
    """Adam settings of the world model."""

    lr: float = 2e-4
    eps: float = 1e-5
    clip: float = 100.0
    weight_decay: float = 1e-6


@dataclass(frozen=True)
class WorldModelConfig:
    """The whole DreamerV2 world model: RSSM, encoder, decoder, heads, losses and optimiser."""

    rssm: RSSMConfig = field(default_factory=RSSMConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    reward_head: HeadConfig = field(default_factory=HeadConfig)
    discount_head: HeadConfig = field(default_factory=HeadConfig)
    pred_discount: bool = True
    discount: float = 0.999
    reward_transform: str = "tanh"
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.reward_transform not in REWARD_TRANSFORMS:
            raise ValueError(
                f"reward_transform={self.reward_transform!r} is not one of {sorted(REWARD_TRANSFORMS)}"
            )
        if not 0.0 <= self.loss.kl_balance <= 1.0:
            raise ValueError(f"loss.kl_balance={self.loss.kl_balance} must lie in [0, 1]")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount={self.discount} must lie in (0, 1]")


REWARD_TRANSFORMS = ("tanh", "identity")


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------
def _atari() -> WorldModelConfig:
    return WorldModelConfig(
        rssm=RSSMConfig(deter=600, hidden=600),
        loss=LossConfig(kl_scale=0.1, kl_free=0.0, discount_scale=5.0),
        optim=OptimConfig(lr=2e-4),
        discount=0.999,
        reward_transform="tanh",
    )


def _dmc(vision: bool) -> WorldModelConfig:
    del vision  # the world model is the same; the encoder type follows the observation space
    return WorldModelConfig(
        rssm=RSSMConfig(deter=200, hidden=200),
        pred_discount=False,
        loss=LossConfig(kl_scale=1.0, kl_free=1.0, discount_scale=1.0),
        optim=OptimConfig(lr=3e-4),
        discount=0.99,
        reward_transform="identity",
    )


def _atari_cpu() -> WorldModelConfig:
    """The Atari preset sized for 2 CPU cores (the shipped Pong model's size): CNN depth 16 instead
    of 48, deter 256 instead of 600, heads 2 x 256 instead of 4 x 400. Adam epsilon 1e-8 (at 1e-5 the
    encoder's small gradients sat below epsilon), the learning rate 4e-4, free nats 1, and the object
    weight 10 for the image loss, so Pong's 3-pixel ball is learnt (see docs/pretrained.md)."""
    return WorldModelConfig(
        rssm=RSSMConfig(deter=256, hidden=256),
        encoder=EncoderConfig(cnn_depth=16),
        decoder=DecoderConfig(cnn_depth=16),
        reward_head=HeadConfig(layers=2, units=256),
        discount_head=HeadConfig(layers=2, units=256),
        loss=LossConfig(kl_scale=0.1, kl_free=1.0, discount_scale=5.0, object_scale=10.0),
        optim=OptimConfig(lr=4e-4, eps=1e-8),
        discount=0.999,
        reward_transform="tanh",
    )


def _dmc_cpu() -> WorldModelConfig:
    """The DMC preset sized for 2 CPU cores: CNN depth 16 instead of 48, heads 2 x 200 instead of
    4 x 400; the RSSM (deter 200, 32 x 32 latents), losses and learning rate are the paper's."""
    return dataclasses.replace(
        _dmc(vision=True),
        encoder=EncoderConfig(cnn_depth=16, mlp_layers=2, mlp_units=200),
        decoder=DecoderConfig(cnn_depth=16, mlp_layers=2, mlp_units=200),
        reward_head=HeadConfig(layers=2, units=200),
        discount_head=HeadConfig(layers=2, units=200),
    )


def _small() -> WorldModelConfig:
    return WorldModelConfig(
        rssm=RSSMConfig(deter=128, hidden=128, stoch=16, classes=16),
        encoder=EncoderConfig(cnn_depth=16, mlp_layers=2, mlp_units=128),
        decoder=DecoderConfig(cnn_depth=16, mlp_layers=2, mlp_units=128),
        reward_head=HeadConfig(layers=2, units=128),
        discount_head=HeadConfig(layers=2, units=128),
        loss=LossConfig(kl_scale=1.0, kl_free=1.0, discount_scale=1.0),
        optim=OptimConfig(lr=1e-3),
        discount=0.99,
        reward_transform="identity",
    )


def _tiny() -> WorldModelConfig:
    return WorldModelConfig(
        rssm=RSSMConfig(deter=32, hidden=32, stoch=4, classes=4),
        encoder=EncoderConfig(cnn_depth=4, mlp_layers=1, mlp_units=32),
        decoder=DecoderConfig(cnn_depth=4, mlp_layers=1, mlp_units=32),
        reward_head=HeadConfig(layers=1, units=32),
        discount_head=HeadConfig(layers=1, units=32),
        loss=LossConfig(kl_scale=1.0, kl_free=1.0, discount_scale=1.0),
        optim=OptimConfig(lr=1e-3),
        discount=0.99,
        reward_transform="identity",
    )


MODEL_PRESETS: dict[str, typing.Callable[[], WorldModelConfig]] = {
    "atari": _atari,
    "dmc_vision": lambda: _dmc(vision=True),
    "dmc_proprio": lambda: _dmc(vision=False),
    "atari_cpu": _atari_cpu,
    "dmc_vision_cpu": _dmc_cpu,
    "dmc_proprio_cpu": _dmc_cpu,
    "small": _small,
    "tiny": _tiny,
}


def model_preset(name: str) -> WorldModelConfig:
    """The world-model config of a named preset (``atari``, ``dmc_vision``, ``dmc_proprio``, ``small``,
    ``tiny``)."""
    return MODEL_PRESETS[check_choice("preset", name, MODEL_PRESETS)]()


def check_at_least(name: str, value: Any, low: int, bound: str | None = None) -> None:
    """Raise a ValueError naming ``name`` and the allowed range unless ``value`` is an integer ``>= low``
    (``bound``: the name of the setting ``low`` comes from, if any)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        limit = f"{bound} ({low})" if bound else str(low)
        raise ValueError(f"{name}={value!r} must be an integer >= {limit}")


def check_choice(what: str, value: str, choices: typing.Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise a ValueError that suggests the
    closest valid name."""
    options = list(choices)
    if value in options:
        return value
    close = difflib.get_close_matches(value, options, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown {what} {value!r}: choose one of {', '.join(options)}.{hint}")


# ----------------------------------------------------------------------------------------------
# JSON round trip for any of these dataclasses
# ----------------------------------------------------------------------------------------------
def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(cls: type[T], data: typing.Mapping[str, Any], *, path: str = "") -> T:
    """Rebuild a config dataclass from :func:`to_dict` output, checking every key and type.

    Raises ValueError naming the offending key (with its dotted path) on unknown keys or wrong types.
    Missing keys take the dataclass defaults, so configs written by older versions still load.
    """
    if not isinstance(data, typing.Mapping):
        raise ValueError(f"config{path or ''}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"config{path}: unknown key(s) {unknown}; valid keys are {sorted(fields)}"
            " (was this file written by another program or a newer wmsim?)"
        )
    kwargs = {name: _coerce(hints[name], value, f"{path}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path=path)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ValueError:
                continue
        raise ValueError(f"config{path}: {value!r} matches none of {hint}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config{path}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(item, v, path) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config{path}: expected an object, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config{path}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config{path}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"config{path}: expected a string, got {value!r}")
        return value
    return value


def to_json(config: Any) -> str:
    """Pretty JSON text of a config dataclass."""
    return json.dumps(to_dict(config), indent=2, sort_keys=True)


def from_json(cls: type[T], text: str) -> T:
    """Inverse of :func:`to_json`."""
    return from_dict(cls, json.loads(text))


# ----------------------------------------------------------------------------------------------
# Command-line options generated from a config dataclass
# ----------------------------------------------------------------------------------------------
def add_config_arguments(parser: Any, cls: type, prefix: str = "") -> None:
    """Add one ``--dotted.name`` option per leaf field of the dataclass ``cls`` to an argparse parser.

    Every option defaults to None, so :func:`apply_overrides` changes only what the user typed.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint):
            add_config_arguments(parser, hint, prefix=f"{name}.")  # type: ignore[arg-type]
            continue
        kind, nargs = _leaf_type(hint)
        help_text = _field_help(cls, f)
        parser.add_argument(
            f"--{name}",
            dest=name,
            type=kind,
            nargs=nargs,
            default=None,
            metavar=kind.__name__.upper() if nargs is None else "N",
            help=help_text,
        )


def int_at_least(low: int) -> typing.Callable[[str], int]:
    """An argparse ``type`` for integer options of at least ``low``: a smaller value is refused while
    the command line is parsed, before any work, with the option's name and the allowed range."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def _leaf_type(hint: Any) -> tuple[Any, str | None]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        return typing.get_args(hint)[0], "+"
    if hint is bool:
        return _parse_bool, None
    if hint in (int, float, str):
        return hint, None
    return str, None


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


_parse_bool.__name__ = "bool"


def _field_help(cls: type, f: dataclasses.Field) -> str:
    doc = str(f.metadata.get("help", "")) if f.metadata else ""
    return f"{doc} (overrides the preset)" if doc else "overrides the preset"


def apply_overrides(config: T, overrides: typing.Mapping[str, Any]) -> T:
    """Replace fields by dotted name (``{"model.rssm.deter": 200}``); None values are skipped.

    All overrides are applied together, so the configs' checks see the final values (``data_steps``
    and ``seq_len`` may change together), and a refused value is named by its dotted path."""
    tree: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ValueError(f"option {dotted!r}: {name!r} is a value, not a group of options")
        node[leaf] = _Leaf(tuple(value) if isinstance(value, list) else value)
    return _apply_tree(config, tree, "")


@dataclass(frozen=True)
class _Leaf:
    value: Any


def _apply_tree(config: T, tree: dict[str, Any], prefix: str) -> T:
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for name, node in tree.items():
        check_choice(f"option {prefix + name!r}: field", name, sorted(names))
        if isinstance(node, _Leaf):
            changes[name] = node.value
        else:
            inner = getattr(config, name)
            if not dataclasses.is_dataclass(inner):
                raise ValueError(f"option {prefix + name!r} is a value, not a group of options")
            changes[name] = _apply_tree(inner, node, f"{prefix}{name}.")
    try:
        return dataclasses.replace(config, **changes)  # type: ignore[type-var]
    except ValueError as exc:
        message = str(exc)
        if prefix and _NAMED.match(message):
            raise ValueError(prefix + message) from exc
        raise


#: A check's message that begins with the setting it refuses (``deter=0 must be ...``).
_NAMED = re.compile(r"^[A-Za-z_][\w.]*=")


def flat_items(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model.rssm.deter": 600, ...}`` for every leaf field (used to compare two configs)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(flat_items(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out
