"""Training configuration: attrs records built from TOML presets plus ``--set`` overrides.

A config file mirrors :class:`TrainConfig`::

    combiner = "pcgrad"
    [combiner_options]
    seed = 0

    [[tasks]]
    name = "sst"
    batch_size = 32
    [tasks.head]
    pooling = "mean"

    [[phases]]
    tasks = ["para"]
    epochs = 1
    sampler = "sequential"

Overrides are ``KEY=VALUE`` with a dotted key and a TOML value: ``lr=5e-5``,
``tasks.sst.batch_size=16`` (tasks are addressed by name), ``phases.0.epochs=2``,
``combiner_options.beta=0.5``.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeGuard

import attrs

from minbert_tasks.heads import HeadConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "PhaseConfig",
    "SmartConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "preset_description",
    "preset_names",
]


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names it."""


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(_inst: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and (not _is_number(value) or value <= 0):
        raise ConfigError(f"{attribute.name} must be positive, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute, value: object) -> None:
    if not _is_number(value) or value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value!r}")


def _fraction(*, include_one: bool, optional: bool = False) -> Any:
    """A value in (0, 1], or (0, 1) without ``include_one``; ``None`` too when ``optional``."""
    interval = "(0, 1]" if include_one else "(0, 1)"

    def check(_inst: object, attribute: attrs.Attribute, value: object) -> None:
        if value is None and optional:
            return
        if not _is_number(value) or not (0 < value < 1 or (include_one and value == 1)):
            unset = " or unset" if optional else ""
            raise ConfigError(f"{attribute.name} must be in {interval}{unset}, got {value!r}")

    return check


def _smoothing(_inst: object, attribute: attrs.Attribute, value: object) -> None:
    if not _is_number(value) or not 0 <= value < 1:
        raise ConfigError(f"{attribute.name} must be in [0, 1), got {value!r}")


def _one_of(*choices: str) -> Any:
    def check(_inst: object, attribute: attrs.Attribute, value: object) -> None:
        if value not in choices:
            raise ConfigError(f"{attribute.name} must be one of {', '.join(choices)}; got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class SmartConfig:
    """SMART's adversarial search (Jiang et al. 2019, Alg. 1), shared by every task that turns
    it on with a positive ``smart_weight``."""

    sigma: float = attrs.field(default=1e-5, validator=_non_negative)
    epsilon: float = attrs.field(default=1e-5, validator=_non_negative)
    step_size: float = attrs.field(default=1e-3, validator=_non_negative)
    steps: int = attrs.field(default=1, validator=_non_negative)
    bregman_beta: float = attrs.field(default=0.99, validator=_non_negative)


@attrs.frozen(kw_only=True)
class TaskConfig:
    """One task of the run.

    Args:
        name: a registered task (``sst``, ``para``, ``sts`` or a plugin's).
        batch_size: examples per batch.
        head: head options; ``None`` is the task's default head.
        max_length: tokens per input after truncation.
        train_limit: read only the first N training examples (quick runs and tests).
        dev_limit: read only the first N dev examples.
        loss_weight: static weight of the task's loss (regularisers included) before its
            gradient fills the task's row; 1 = as is.
        smart_weight: λ_s of the SMART smoothness term (0 = off).
        bregman_weight: μ of the Bregman proximal term (0 = off).
        label_smoothing: ε in [0, 1) for a classification loss (Szegedy et al. 2016, §7): the
            target mixes the label with the uniform distribution, (1 − ε)·y + ε/K (K = 2 for a
            binary logit); not for a regression score. 0 = off.
        group_by_length: batch examples of similar token length together (less padding, so
            faster steps; each pass still covers every example once, in random batches).
    """

    name: str
    batch_size: int = attrs.field(default=32, validator=_positive)
    head: HeadConfig | None = None
    max_length: int = attrs.field(default=128, validator=_positive)
    train_limit: int | None = attrs.field(default=None, validator=_positive)
    dev_limit: int | None = attrs.field(default=None, validator=_positive)
    loss_weight: float = attrs.field(default=1.0, validator=_positive)
    smart_weight: float = attrs.field(default=0.0, validator=_non_negative)
    bregman_weight: float = attrs.field(default=0.0, validator=_non_negative)
    label_smoothing: float = attrs.field(default=0.0, validator=_smoothing)
    group_by_length: bool = False


@attrs.frozen(kw_only=True)
class PhaseConfig:
    """A stretch of training over some tasks with one sampler (e.g. paraphrase-first)."""

    name: str = "main"
    tasks: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(tuple))
    epochs: int = attrs.field(default=1, validator=_positive)
    sampler: str = "round_robin"
    sampler_options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class TrainConfig:
    """Everything a training run needs; saved as ``config.json`` in the run directory."""

    tasks: tuple[TaskConfig, ...] = attrs.field(converter=tuple)
    phases: tuple[PhaseConfig, ...] = attrs.field(default=(PhaseConfig(),), converter=tuple)
    model: str | None = None  # a BERT folder; None = the bundled all-MiniLM-L6-v2; "tiny-random"
    data_dir: str | None = None
    combiner: str = "sum"
    combiner_options: dict[str, Any] = attrs.field(factory=dict)
    segments: str = attrs.field(default="whole", validator=_one_of("whole", "tensor", "module"))
    lr: float = attrs.field(default=3e-5, validator=_positive)
    head_lr: float | None = attrs.field(default=None, validator=_positive)
    # Layer-wise learning-rate decay ξ: encoder layer k of L (1 = bottom) trains at lr·ξ^(L−k),
    # the embeddings at lr·ξ^L, the pooler at lr; 1 = one rate for the whole encoder.
    layer_lr_decay: float = attrs.field(default=1.0, validator=_fraction(include_one=True))
    weight_decay: float = attrs.field(default=0.01, validator=_non_negative)
    warmup: float = attrs.field(default=0.1, validator=_non_negative)
    schedule: str = attrs.field(default="linear", validator=_one_of("linear", "cosine", "constant"))
    # Micro-batches per optimizer step; the step's gradient is their mean (an epoch's shorter last
    # group is averaged over its own size, so its micro-batches weigh as much as any other's).
    grad_accumulation: int = attrs.field(default=1, validator=_positive)
    clip_norm: float | None = attrs.field(default=1.0, validator=_positive)
    dropout: float | None = None
    freeze_word_embeddings: bool = False
    # Evaluate, keep as best.pt and predict with an exponential moving average of the weights
    # (Polyak averaging; decay per optimizer step, e.g. 0.998 ≈ the last 500 steps). None = off.
    ema_decay: float | None = attrs.field(default=None, validator=_fraction(include_one=False, optional=True))
    seed: int = 0
    device: str = "auto"
    # bf16 autocast: "auto" uses it where it runs natively (CUDA with bf16; CPUs with AVX512-BF16
    # or AMX: the default preset ran 1.8x faster on such a CPU), "bf16" always, "off" never.
    amp: str = attrs.field(default="auto", validator=_one_of("auto", "bf16", "off"))
    eval_every: int | None = attrs.field(default=None, validator=_positive)
    eval_batch_size: int = attrs.field(default=128, validator=_positive)
    checkpoint_every: int | None = attrs.field(default=200, validator=_positive)
    log_every: int = attrs.field(default=10, validator=_positive)
    # Total training wall time (evaluations included, summed over resumes); the run stops,
    # evaluates and checkpoints at the first optimizer step past it.
    time_budget_minutes: float | None = attrs.field(default=None, validator=_positive)
    # Decay the learning rate by max(step progress, time progress), so that a budgeted run ends
    # its schedule at the budget instead of being cut mid-decay. Time-dependent, hence opt-in:
    # runs stop being bit-reproducible (resume stays correct, not bit-identical).
    fit_schedule_to_budget: bool = False
    # Bitwise-reproducible training from the seed (on one machine, build and thread count):
    # torch's deterministic algorithms, and a schedule that follows the step count only (a
    # fit_schedule_to_budget that would read the clock is set aside). The time budget still
    # stops the run, so only a run that ends by steps or epochs is reproducible to the end.
    deterministic: bool = False
    max_steps: int | None = attrs.field(default=None, validator=_positive)
    smart: SmartConfig = attrs.field(factory=SmartConfig)
    strict_data: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("a run needs at least one task ([[tasks]] with a name)")
        names = [t.name for t in self.tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"task(s) listed twice: {', '.join(duplicates)}")
        for k, phase in enumerate(self.phases):
            unknown = sorted(set(phase.tasks or ()) - set(names))
            if unknown:
                raise ConfigError(f"phases.{k} trains {', '.join(unknown)}, which are not in [[tasks]]")
        if self.fit_schedule_to_budget and self.time_budget_minutes is None:
            raise ConfigError("fit_schedule_to_budget needs time_budget_minutes (the budget to fit)")
        if self.warmup >= 1:
            raise ConfigError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")

    def task(self, name: str) -> TaskConfig:
        return next(t for t in self.tasks if t.name == name)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# --------------------------------------------------------------------------- building from dicts


def _build(cls: type, data: Any, where: str) -> Any:
    """Build attrs class ``cls`` from a mapping, naming the path of any bad key."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'} must be a table, got {data!r}")
    fields = attrs.fields_dict(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in {where or 'config'}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        kwargs[key] = _convert(hints[key], value, path)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _scalar(hint: Any, value: Any, path: str) -> Any:
    """``value`` checked against a plain ``int``/``float``/``bool``/``str`` hint (an integral
    float is accepted as an int); other hints pass through to the fields' validators."""
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{path} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{path} must be an integer, got {value!r}")
    if hint is float and not _is_number(value):
        raise ConfigError(f"{path} must be a number, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{path} must be a string, got {value!r}")
    return value


def _item_name(path: str, index: int, item: Any) -> str:
    """How an override addresses list item ``index``: a task by its name, anything else by index."""
    name = item.get("name") if path == "tasks" and isinstance(item, Mapping) else None
    return name if isinstance(name, str) and name else str(index)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None:
            return None
        if len(inner) == 1:
            return _convert(inner[0], value, path)
        return value
    if attrs.has(hint):
        return _build(hint, value, path)
    if origin is tuple and args and attrs.has(args[0]):
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{path} must be a list of tables")
        return tuple(_build(args[0], v, f"{path}.{_item_name(path, k, v)}") for k, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{path}.{k}") for k, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a table, got {value!r}")
        return value
    return _scalar(hint, value, path)


def _task_index(tasks: list[Any], name: str, key: str) -> int:
    for k, task in enumerate(tasks):
        if task.get("name") == name:
            return k
    if name.isdigit() and int(name) < len(tasks):
        return int(name)
    raise ConfigError(f"override {key!r}: no task named {name!r} (tasks: {[t.get('name') for t in tasks]})")


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys, TOML values) to a config mapping in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like KEY=VALUE (e.g. lr=5e-5)")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: a string
        parts = key.split(".")
        node: Any = data
        for k, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                index = (
                    _task_index(node, part, key) if parts[k - 1] == "tasks" else _list_index(node, part, key)
                )
                node = node[index]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                where = ".".join(parts[: k + 1])
                raise ConfigError(
                    f"override {key!r}: {where} is {node!r}, not a table to set {parts[k + 1]!r} in"
                )
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, key)] = value
        else:
            node[last] = value
    return data


def _list_index(items: list[Any], part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(
            f"override {key!r}: {part!r} is not an index of a list of {len(items)} (0..{len(items) - 1})"
        )
    return int(part)


def preset_names() -> list[str]:
    """Names of the bundled presets (``minbert_tasks/presets/*.toml``)."""
    folder = resources.files("minbert_tasks") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_description(name: str) -> str:
    """The one-line ``description`` a bundled preset declares (empty when it has none)."""
    return str(_read_toml(name).get("description", ""))


def _read_toml(source: str) -> dict[str, Any]:
    path = Path(source)
    if path.suffix != ".toml" and not path.exists():
        if source not in preset_names():
            raise ConfigError(
                f"no config file {source!r} and no preset of that name; presets: {', '.join(preset_names())}"
            )
        text = (resources.files("minbert_tasks") / "presets" / f"{source}.toml").read_text()
        where = f"preset {source!r}"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        where = str(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None


def load_config(source: str | Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML file, a preset name or a mapping, plus overrides."""
    data = json.loads(json.dumps(source)) if isinstance(source, Mapping) else _read_toml(source)
    data.pop("description", None)  # says what a config is for; not a training setting
    apply_overrides(data, overrides)
    return _build(TrainConfig, data, "")


def config_from_json(text: str) -> TrainConfig:
    """Rebuild the config saved in a run directory."""
    return _build(TrainConfig, json.loads(text), "")
