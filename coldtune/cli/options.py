"""Command-line options made from config dataclasses: one source of defaults and help.

A config's fields become a command's options (`--factors 50`), with the dataclass's
defaults and the help in each field's `metadata["help"]`; `metadata["flag"]` renames an
option where the command line has its own word for it (`--cold-songs` for
`n_cold_songs`). The command receives the built config. `parse_options` does the same
for a list of words, for commands whose options depend on an argument (`train MODEL`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from typing import Annotated

import typer

from coldtune.errors import ParameterError


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag", "--" + field.name.replace("_", "-"))


def takes(
    config_class: type,
    *,
    into: str,
    only: tuple[str, ...] | None = None,
    exclude: tuple[str, ...] = (),
    panel: str | None = None,
):
    """Decorate a typer command so that it takes `config_class`'s fields as options
    and is called with the built config as keyword `into`. Only the fields in `only`
    (default: all) less those in `exclude` become options, the others keep their
    defaults; `panel` groups the options in --help. A `tuple[X, ...]` field is an
    option given once per item (`--tag rock --tag jazz`)."""
    hints = typing.get_type_hints(config_class)
    chosen = [
        f
        for f in dataclasses.fields(config_class)
        if (only is None or f.name in only) and f.name not in exclude
    ]
    repeated = {f.name for f in chosen if _is_repeated(hints[f.name])}
    defaults = {f.name: f.default for f in chosen}

    def decorate(command):
        signature = inspect.signature(command)
        # resolved here, where the command's names are known (typer reads the wrapper)
        resolved = typing.get_type_hints(command, include_extras=True)
        kept = [
            p.replace(annotation=resolved.get(p.name, p.annotation))
            for p in signature.parameters.values()
            if p.name != into
        ]
        added = [
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None if field.name in repeated else field.default,
                annotation=Annotated[
                    _option_type(hints[field.name]),
                    typer.Option(
                        _flag(field), help=field.metadata.get("help", ""), rich_help_panel=panel
                    ),
                ],
            )
            for field in chosen
        ]

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {field.name: kwargs.pop(field.name) for field in chosen}
            for name in repeated:
                values[name] = tuple(values[name] or defaults[name])
            return command(*args, **kwargs, **{into: config_class(**values)})

        wrapper.__signature__ = signature.replace(parameters=[*kept, *added])
        wrapper.__annotations__ = {k: v for k, v in resolved.items() if k != into}
        return wrapper

    return decorate


def _is_repeated(hint) -> bool:
    return typing.get_origin(hint) is tuple and typing.get_args(hint)[1:] == (...,)


def _option_type(hint):
    """typer's type for a field: a tuple of any length is a repeated option."""
    return list[typing.get_args(hint)[0]] | None if _is_repeated(hint) else hint


def parse_options(config_class: type, words: list[str]) -> dict:
    """`--name value` pairs of `words`, each converted to its field's type (tuples
    comma-separated, "none" for an optional value). A name the config lacks is kept
    as text, for the registry to name the options that do apply."""
    hints = typing.get_type_hints(config_class)
    fields = {f.name for f in dataclasses.fields(config_class)}
    options, rest = {}, list(words)
    while rest:
        word = rest.pop(0)
        if not word.startswith("--") or not rest:
            raise ParameterError(f"expected --option value, got {word!r}")
        name, value = word[2:].replace("-", "_"), rest.pop(0)
        options[name] = _convert(value, hints[name], name) if name in fields else value
    return options


def _convert(text: str, hint, name: str):
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        if text.lower() == "none":
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_convert(part, item, name) for part in text.split(","))
    try:
        return (text.lower() in ("1", "true", "yes")) if hint is bool else hint(text)
    except ValueError:
        flag = "--" + name.replace("_", "-")
        raise ParameterError(f"{flag}: {text!r} is not a {hint.__name__}") from None


def options_help(config_class: type) -> str:
    """One line per field: its flag, default and help."""
    lines = []
    for field in dataclasses.fields(config_class):
        default = "none" if field.default is None else field.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        help_text = field.metadata.get("help", "")
        lines.append(f"  {_flag(field):<24} {default!s:<10} {help_text}".rstrip())
    return "\n".join(lines)
