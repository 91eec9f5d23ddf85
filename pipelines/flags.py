"""Command-line flags generated from dataclass fields: each field states its name, type,
default and help once (`field(metadata={"help": ...})`), and becomes `--the-name`.

    add_fields(parser, PretrainConfig)     # one flag per field with a "help" in its metadata

Types: `bool` -> `--x/--no-x`; `int | str`, `float | str`, `bool | str` -> a value or the word
`auto`; `X | None` -> a value, default None; `metadata["choices"]` limits a string.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from encoders.recipe import AUTO

BOOL_WORDS = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to a flag's help unless X is None or the help already says it."""

    def _get_help_string(self, action):
        if action.default is None or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def auto_or(cast):
    """argparse type: the word `auto`, or a value of `cast`."""
    def parse(text: str):
        if text == AUTO:
            return AUTO
        if cast is bool:
            if text.lower() in BOOL_WORDS:
                return BOOL_WORDS[text.lower()]
            raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")
        return cast(text)
    parse.__name__ = cast.__name__
    return parse


def value_type(hint) -> tuple[type, bool]:
    """(the value's type, whether the word `auto` is accepted) of a field's annotation."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    kinds = [a for a in args if a is not type(None)]
    auto = str in kinds and len(kinds) > 1
    kinds = [k for k in kinds if k is not str] if auto else kinds
    return kinds[0], auto


def flag_kwargs(f: dataclasses.Field, hint) -> dict:
    """argparse keyword arguments for one dataclass field."""
    meta = f.metadata
    kind, auto = value_type(hint)
    kw = {"help": meta["help"], "default": f.default}
    if kind is bool and not auto:
        kw["action"] = argparse.BooleanOptionalAction
    elif auto:
        kw["type"] = auto_or(kind)
    elif kind is not str:
        kw["type"] = kind
    if "choices" in meta:
        kw["choices"] = meta["choices"]
    if meta.get("required"):
        kw["required"] = True
        del kw["default"]
    return kw


def add_fields(parser, cls, only=None) -> None:
    """A flag for every field of dataclass `cls` whose metadata has a "help" (and whose name is
    in `only`, if given), in the fields' order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "help" in f.metadata and (only is None or f.name in only):
            parser.add_argument("--" + f.name.replace("_", "-"), **flag_kwargs(f, hints[f.name]))


def add_shared_fields(parser, classes: dict[str, type]) -> list[str]:
    """One flag per field name over several dataclasses (e.g. every method's settings), each
    taking `auto` for "the class's own default"; the help names the classes with each help
    text and default. Returns the names. A flag left out is absent from the parsed namespace."""
    seen: dict[str, dict] = {}
    for label, cls in classes.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            entry = seen.setdefault(f.name, {"kind": value_type(hints[f.name])[0], "helps": {}, "defaults": []})
            entry["helps"].setdefault(f.metadata["help"], []).append(label)
            entry["defaults"].append(f"{label} {f.default}")
    for name, entry in seen.items():
        helps = [f"{', '.join(labels)}: {text}" for text, labels in entry["helps"].items()]
        parser.add_argument("--" + name.replace("_", "-"), type=auto_or(entry["kind"]), default=argparse.SUPPRESS,
                            help=f"{'; '.join(helps)} (default: {', '.join(entry['defaults'])})")
    return list(seen)
