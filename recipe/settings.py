"""The settings of a run: a `ModelConfig` and a `TrainConfig`, the defaults of each architecture, and
the two ways to give them, a JSON file and command-line flags.

    from settings import ARCH_DEFAULTS, resolve
    settings = resolve({"model": {"arch": "cnn"}, "training": {"epochs": 5}})   # cnn defaults + 5

A settings file is `{"model": {...}, "training": {...}}`: the shape of the settings in run.json and
in tune.py's best_config.json, so either one is a `--config` for train.py. Its sections may name
only some fields; every other value is the default of the architecture it names. Each flag is a
field (`--batch-size` sets `training.batch_size`), so the names are listed once: in the configs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path

from ground.outputs import read_json
from model import ModelConfig
from recipe.config import TrainConfig

# Values a training step computes and keeps for its gradients: a billion float32 are 4 GB (the
# default CNN's batch holds 12 million).
MAX_BATCH_ACTIVATIONS = 1_000_000_000


@dataclass(frozen=True)
class Settings:
    model: ModelConfig
    training: TrainConfig

    def __post_init__(self) -> None:
        held = self.training.batch_size * self.model.activations()
        if held > MAX_BATCH_ACTIVATIONS:
            raise ValueError(
                f"batch_size {self.training.batch_size} with these layers computes {held:,} values a "
                f"step, over {MAX_BATCH_ACTIVATIONS:,}: choose a smaller batch_size or smaller layers"
            )

    def as_dict(self) -> dict[str, dict]:
        """{"model": {...}, "training": {...}} as JSON holds it (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


SECTIONS = {"model": ModelConfig, "training": TrainConfig}
DEFAULT_ARCH = "mlp"
# What each architecture starts from. A CNN epoch costs several MLP epochs, and its dense layers
# only read the convolutions' features: 256 wide, they hold both "which digit" and "no digit"
# better than 128 (bench/NOTES.md). The epochs are as many as keep each run within a quarter more
# time than the digits alone took: the images that are not digits add a fifth to each epoch
# (bench/NOTES.md). bfloat16 made the CNN's convolutions 1.4-1.6x
# faster; the MLP it made only 1.07x faster, with validation 0.05 points lower (bench/NOTES.md).
# The line model (recipe/lines.py): batches of 64 lines, which cost little more a step than 32 (its
# GRU steps through the frames one by one whatever the batch) and so read twice the lines an hour;
# a fourth convolution block, nearly free a step and 3.7 validation points better at equal time;
# 20 epochs: at 16 its training and validation lines were still read alike and rising, and four
# more read 2.4 validation points more, inside 5x the MLP's time (bench/NOTES.md, 2026-12-03).
ARCH_DEFAULTS = {
    "mlp": Settings(ModelConfig(), TrainConfig()),
    "cnn": Settings(ModelConfig(arch="cnn", hidden=(256,)), TrainConfig(epochs=22, precision="auto")),
    "line": Settings(
        ModelConfig(arch="line", hidden=(128,), filters=(16, 32, 64, 96), output_activation="softmax"),
        TrainConfig(epochs=20, batch_size=64, lr=3e-3, not_digits=0.05, precision="auto"),
    ),
}


def resolve(overrides: dict[str, dict]) -> Settings:
    """The defaults of the architecture `overrides` names (mlp if none) with its values applied.

    Raises ValueError, naming the setting, for an unknown name, a wrong type or a bad value.
    """
    # Its type first: a list or dict here cannot even be looked up among the architectures.
    arch = checked_value(ModelConfig, "model", "arch", overrides.get("model", {}).get("arch", DEFAULT_ARCH))
    if arch not in ARCH_DEFAULTS:
        raise ValueError(f"arch must be one of {', '.join(ARCH_DEFAULTS)}, got {arch!r}")
    base = ARCH_DEFAULTS[arch]
    configs = {}
    for section, config_type in SECTIONS.items():
        given = overrides.get(section, {})
        values = {name: checked_value(config_type, section, name, value) for name, value in given.items()}
        configs[section] = dataclasses.replace(getattr(base, section), **values)
    return Settings(**configs)


def checked_value(config_type: type, section: str, name: str, value: object) -> object:
    """`value` as the field `name` of `config_type` takes it, or ValueError if it cannot be one."""
    kinds = typing.get_type_hints(config_type)
    if name not in kinds:
        raise ValueError(f"{name!r} is not a {section} setting; those are {', '.join(kinds)}")
    kind = kinds[name]
    if kind == (int | None):
        if value is None:
            return None
        kind = int
    whole = isinstance(value, int) and not isinstance(value, bool)
    if kind == tuple[int, ...] and isinstance(value, (list, tuple)):
        if value and all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return tuple(value)
    elif kind is float and (whole or isinstance(value, float)):
        return float(value)
    elif (kind is int and whole) or (kind in (bool, str) and isinstance(value, kind)):
        return value
    wanted = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    raise ValueError(f"{name} must be {wanted.get(kind, 'a list of integers')}, got {value!r}")


def read_file(path: Path) -> dict[str, dict]:
    """The settings in a JSON file (run.json, best_config.json or one's own), checked by `resolve`."""
    try:
        content = read_json(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    sections = {name: content[name] for name in SECTIONS if isinstance(content, dict) and name in content}
    if not sections:
        raise ValueError(f'{path} holds no "model" or "training" settings: see a run.json for the shape')
    for name, values in sections.items():
        if not isinstance(values, dict):
            raise ValueError(f'{path}: "{name}" must be a JSON object of settings')
    return sections


def merged(*overrides: dict[str, dict]) -> dict[str, dict]:
    """Overrides section by section, later ones winning."""
    return {
        section: {k: v for given in overrides for k, v in given.get(section, {}).items()}
        for section in SECTIONS
    }


# ---- Command-line flags -------------------------------------------------------------------------


def add_flags(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One flag per setting (but those in `exclude`), in a group per section.

    A flag not given leaves no attribute behind (argparse.SUPPRESS), so `given_flags` returns only
    what the user typed, to override a file's and the architecture's defaults.
    """
    for section, config_type in SECTIONS.items():
        group = parser.add_argument_group(f"{section} settings, [defaults] by --arch")
        kinds = typing.get_type_hints(config_type)
        for field in dataclasses.fields(config_type):
            if field.name in exclude:
                continue
            shown = {
                arch: shown_value(getattr(getattr(defaults, section), field.name))
                for arch, defaults in ARCH_DEFAULTS.items()
            }
            default_text = (
                DEFAULT_ARCH
                if field.name == "arch"
                else shown[DEFAULT_ARCH]
                if len(set(shown.values())) == 1
                else "; ".join(f"{arch}: {value}" for arch, value in shown.items())
            )
            options = {
                "dest": f"{section}.{field.name}",
                "default": argparse.SUPPRESS,
                "help": f"{field.metadata['help']} [{default_text}]".replace("%", "%%"),
            }
            kind = kinds[field.name]
            if kind is bool:
                options["action"] = argparse.BooleanOptionalAction
            elif "choices" in field.metadata:
                options["choices"] = field.metadata["choices"]
            elif kind == tuple[int, ...]:
                options.update(type=sizes, metavar="N,N,...")
            else:
                options.update(
                    type=int if kind == (int | None) else kind, metavar="N" if kind is not float else "X"
                )
            group.add_argument("--" + field.name.replace("_", "-"), **options)


def given_flags(args: argparse.Namespace) -> dict[str, dict]:
    """The settings flags the user gave, as overrides for `resolve`."""
    overrides = {section: {} for section in SECTIONS}
    for dest, value in vars(args).items():
        section, _, name = dest.partition(".")
        if section in SECTIONS and name:
            overrides[section][name] = value
    return overrides


def sizes(text: str) -> tuple[int, ...]:
    """'512,256' -> (512, 256): how layer widths and filters are written on the command line."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated sizes like 512,256, got {text!r}"
        ) from None


def shown_value(value: object) -> str:
    """A default as the help shows it: 1024,512 / on / all."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return "all" if value is None else str(value)
