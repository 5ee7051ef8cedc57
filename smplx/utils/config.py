"""Typed configuration from YAML: defaults file, then experiment file, then `key.sub=value` overrides.

Each command describes its configuration as nested dataclasses (one per component, fields typed, no defaults in
Python: `default.yaml` holds them all, with a comment each). `load_config` merges the YAML files and the overrides,
rejects unknown keys (naming the nearest valid one), missing keys, values of the wrong type, numbers that are not
finite and numbers outside their field's range, and returns the dataclass tree. YAML is read with `yaml.safe_load`
only. A field declares its range with `Annotated`:

    lr: Annotated[float, Range(gt=0)]  # Adam learning rate (the alias Positive says the same)
    max_frames: Annotated[int, Range(ge=-1)]  # at most this many frames (-1: all)

A config class may also declare an umbrella key (`UMBRELLA: ClassVar[Umbrella]`), whose value fixes other keys: under
`fidelity: published`, say, each key of that preset takes its preset value over the defaults file, and a different
value set for it by a later file or on the command line is an error naming the key, both values and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml

from smplx.utils.cli import InputError, MissingFileError

__all__ = ["load_config", "config_to_dict", "ConfigError", "Range", "Count", "NonNegInt", "Positive", "NonNegative",
           "Fraction", "Umbrella", "resolve_device", "parse_config_command"]


class ConfigError(InputError):
    """A configuration value or key that a user wrote is wrong; the message says where and what to do."""


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric config field (each bound optional): gt < value, ge <= value, value < lt,
    value <= le. Used as `Annotated[float, Range(gt=0)]`; checked when the config is loaded."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def check(self, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return  # the non-numeric alternative of a union such as int | Literal['auto']
        for bound, holds, sign in ((self.gt, lambda b: value > b, ">"), (self.ge, lambda b: value >= b, ">="),
                                   (self.lt, lambda b: value < b, "<"), (self.le, lambda b: value <= b, "<=")):
            if bound is not None and not holds(bound):
                raise ConfigError(f"{where}={value!r} is out of range: it must be {self}")

    def __str__(self) -> str:
        parts = [f"{sign} {bound:g}" for bound, sign in ((self.gt, ">"), (self.ge, ">="), (self.lt, "<"),
                                                         (self.le, "<=")) if bound is not None]
        return " and ".join(parts)


@dataclass(frozen=True)
class Umbrella:
    """A top-level key whose value fixes other keys. `presets[value]` maps dotted keys (`data.target`) to the values
    they take under that value of `key`. Declared on a config class as `UMBRELLA: ClassVar[Umbrella]`."""

    key: str
    presets: Mapping[str, Mapping[str, Any]]


Count = Annotated[int, Range(ge=1)]  # 1, 2, ...
NonNegInt = Annotated[int, Range(ge=0)]  # 0, 1, ...
Positive = Annotated[float, Range(gt=0)]
NonNegative = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise MissingFileError(f"config file {path} does not exist; check the path (the configs are under configs/)")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(tree).__name__}")
    return tree


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(text: str) -> dict:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"command-line override {text!r} must look like key.sub=value")
    value = yaml.safe_load(raw) if raw else ""
    tree: dict = {}
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is Annotated:
        inner, *marks = typing.get_args(kind)
        value = _coerce(value, inner, where)
        for mark in marks:
            if isinstance(mark, Range):
                mark.check(value, where)
        return value
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise ConfigError(f"{where}={value!r} is not one of {list(typing.get_args(kind))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None:
            if len(args) == len(typing.get_args(kind)):
                raise ConfigError(f"{where} may not be null")
            return None
        errors = []
        for arg in args:  # the first alternative that takes the value (e.g. float | Literal['auto'])
            try:
                return _coerce(value, arg, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(" or ".join(errors))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(kind)[:1] or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:  # a table whose keys the user chooses (e.g. one row per joint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        key_kind, item = typing.get_args(kind) or (Any, Any)
        return {_coerce(k, key_kind, where): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _build(cls: type, tree: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in tree:
        if key not in fields:
            near = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {where}{near[0]}?" if near else f"; valid keys: {sorted(fields)}"
            raise ConfigError(f"unknown config key {where}{key}{hint}")
    hints = typing.get_type_hints(cls, include_extras=True)
    values = {}
    for name in fields:
        if name not in tree:
            raise ConfigError(f"config key {where}{name} is missing (every key needs a value in the defaults file)")
        kind, value = hints[name], tree[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{name} must be a mapping of keys, got {value!r}")
            values[name] = _build(kind, value, f"{where}{name}.")
        else:
            values[name] = _coerce(value, kind, f"{where}{name}")
    return cls(**values)


def load_config(cls: type, files: list[str | Path], overrides: list[str] = ()):
    """Build the dataclass `cls` from YAML files merged in order, then `key.sub=value` overrides.

    Raises:
        FileNotFoundError: a file is missing.
        ConfigError: invalid YAML, an unknown key (with the nearest valid one), a missing key, a wrong type, or a
            value that contradicts the umbrella key's preset.

    Under an umbrella key (`Umbrella`), the first file is the defaults file: the preset's keys take their preset
    values over it, and a later file or an override that sets one of them to another value is a ConfigError.
    """
    sources = [(str(path), _read_yaml(Path(path))) for path in files]
    sources += [("the command line", _parse_override(text)) for text in overrides]
    tree: dict = {}
    for _, update in sources:
        tree = _merge(tree, update)
    umbrella = getattr(cls, "UMBRELLA", None)
    if umbrella is not None:
        tree = _apply_umbrella(cls, umbrella, tree, sources[1:])
    return _build(cls, tree, "")


def _lookup(tree: Any, dotted: str) -> tuple[bool, Any]:
    """(whether the nested mapping `tree` sets the dotted key, its value)."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False, None
        tree = tree[part]
    return True, tree


def _field_kind(cls: type, dotted: str) -> Any:
    """The annotated type of a dotted key of a config class (KeyError: no such key, a bug of the preset)."""
    kind = cls
    for part in dotted.split("."):
        hints = typing.get_type_hints(kind, include_extras=True) if dataclasses.is_dataclass(kind) else {}
        if part not in hints:
            raise KeyError(f"preset key {dotted!r} is not a key of {cls.__name__}")
        kind = hints[part]
    return kind


def _as_yaml(value: Any) -> str:
    """A value as it is written in YAML or on the command line (true, 0.0, composite)."""
    return yaml.safe_dump(value, default_flow_style=True).splitlines()[0]


def _apply_umbrella(cls: type, umbrella: Umbrella, tree: dict, explicit: list[tuple[str, dict]]) -> dict:
    """`tree` with the preset of its umbrella value applied; a conflicting explicit value is a ConfigError."""
    choice = tree.get(umbrella.key)
    if not isinstance(choice, str) or choice not in umbrella.presets:
        return tree  # the field's Literal type reports it when the tree is built
    others = " or ".join(f"{umbrella.key}: {other}" for other in umbrella.presets if other != choice)
    for dotted, value in umbrella.presets[choice].items():
        kind = _field_kind(cls, dotted)
        for source, update in reversed(explicit):  # the last file or override that sets the key decides
            found, raw = _lookup(update, dotted)
            if found:
                if _coerce(raw, kind, dotted) != value:
                    said, wanted = _as_yaml(raw), _as_yaml(value)
                    raise ConfigError(f"{umbrella.key}: {choice} sets {dotted}: {wanted}, but {source} sets "
                                      f"{dotted}: {said}; set {others}, or drop {dotted}={said}")
                break
        node = tree = dict(tree)
        *parents, last = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                break  # not a mapping: building the tree names it
            node[part] = dict(node[part])
            node = node[part]
        else:
            node[last] = value
    return tree


def config_to_dict(config) -> dict:
    """The config as plain data (for saving next to outputs with yaml.safe_dump)."""
    return dataclasses.asdict(config)


def resolve_device(choice: str):
    """The torch device of a `device: auto | cpu | cuda` setting (auto: CUDA when present)."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; use device=auto or device=cpu")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def parse_config_command(cls: type, defaults: Path, argv: list[str] | None, *, description: str,
                         eval_help: str | None = None):
    """The command line of a config-driven command: `--config FILE` applied over `defaults`, `--eval` (when
    eval_help is given), then `key.sub=value` overrides. Returns (config, whether --eval was given)."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help=f"experiment YAML applied over {defaults}")
    if eval_help is not None:
        parser.add_argument("--eval", action="store_true", help=eval_help)
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    config = load_config(cls, [defaults] + ([args.config] if args.config else []), args.overrides)
    return config, bool(getattr(args, "eval", False))
