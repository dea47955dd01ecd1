"""Command-line options generated from the fields of a configuration dataclass:
:class:`~search.settings.RunSettings` (what each run trains) and
:class:`~search.options.SearchOptions` (how a search runs).

Each field becomes one option: its type, its default (or its ``cli_default`` metadata), its
``help`` metadata, and its flag (``--`` and the name with dashes, or the ``flag``
metadata). A ``Literal`` field becomes a choice, a mapping field a JSON option, a tuple field
a repeatable option, and a field with a ``cli_default`` a text option whose ``'0'`` or
``''`` means None. The wrapped command gets the options back as one object.

Examples:
    >>> import inspect
    >>> def command(settings: RunSettings = RunSettings()) -> None: ...
    >>> list(inspect.signature(settings_options(command)).parameters)[:3]
    ['task', 'task_kwargs', 'model']
    >>> def search(options: SearchOptions = SearchOptions()) -> None: ...
    >>> "lease_s" in inspect.signature(search_options(search)).parameters
    True
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field
from enum import StrEnum
from types import NoneType, UnionType
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints

import typer

from einspace.errors import EinspaceError
from search.options import SearchOptions, option_fields, with_options
from search.settings import RunSettings, settings_fields

__all__ = ["dataclass_options", "search_options", "settings_options"]

C = TypeVar("C", bound=Callable[..., Any])


def dataclass_options(
    cls: type[Any],
    param: str,
    option_fields: Callable[[], tuple[Field[Any], ...]],
    build: Callable[..., Any] | None = None,
) -> Callable[[C], C]:
    """A decorator that replaces a command's parameter ``param`` (of type ``cls``) by one
    option per field of ``option_fields()`` (see the module docs); ``build`` (default:
    ``cls``) makes the object from the options' values by field name."""
    make = build or cls

    def decorate(command: C) -> C:
        signature = inspect.signature(command)
        hints = get_type_hints(command, include_extras=True)
        field_hints = get_type_hints(cls)
        params: list[inspect.Parameter] = []
        parsers: dict[str, Callable[[Any], Any]] = {}
        for p in signature.parameters.values():
            if p.name != param:
                params.append(p.replace(annotation=hints[p.name], kind=p.KEYWORD_ONLY))
                continue
            for f in option_fields():
                kind, default, parse = _option_type(f, field_hints[f.name])
                parsers[f.name] = parse
                decls = [f"--{f.metadata['flag']}"] if "flag" in f.metadata else []
                option = typer.Option(default, *decls, help=str(f.metadata.get("help", "")))
                params.append(
                    inspect.Parameter(f.name, p.KEYWORD_ONLY, default=option, annotation=kind)
                )

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {name: parse(kwargs.pop(name)) for name, parse in parsers.items()}
            return command(**{param: make(**values)}, **kwargs)

        del wrapper.__wrapped__  # typer reads the new signature, not the command's
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return cast(C, wrapper)

    return decorate


settings_options = dataclass_options(RunSettings, "settings", settings_fields)
"""Replace a command's ``settings: RunSettings`` parameter by one option per run setting,
so that a new setting is a new option without touching the command."""

search_options = dataclass_options(SearchOptions, "options", option_fields, with_options)
"""Replace a command's ``options: SearchOptions`` parameter by one option per search
option."""


def _option_type(f: Field[Any], hint: Any) -> tuple[Any, Any, Callable[[Any], Any]]:
    """The CLI type of a field, its CLI default, and the parser back to the field."""
    default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
    if "cli_default" in f.metadata:
        return str, str(f.metadata["cli_default"]), _none_or_text
    if get_origin(hint) is Literal:
        choices = StrEnum(f.name, {str(v): str(v) for v in get_args(hint)})  # type: ignore[misc]
        return choices, choices(default), lambda value: str(value.value)
    if hint in (int, float, str, bool):
        return hint, default, lambda value: value
    args = get_args(hint)
    if get_origin(hint) in (Union, UnionType) and NoneType in args and len(args) == 2:
        inner = next(a for a in args if a is not NoneType)
        if inner in (int, float, str):
            return hint, default, lambda value: value
    if get_origin(hint) is tuple:
        return list[str] | None, None, lambda value: tuple(value or ())
    if get_origin(hint) is Mapping or hint is Mapping:
        return str, json.dumps(default), functools.partial(_json_option, f.name)
    raise TypeError(f"no command-line option for field {f.name!r} of type {hint!r}")


def _none_or_text(value: str) -> str | None:
    return None if value.strip() in ("", "0") else value


def _json_option(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        option = "--" + name.replace("_", "-")
        raise EinspaceError(
            f"{option} {text!r} is not JSON ({err.msg}); expected e.g. '{{\"n_eval\": 64}}'"
        ) from None
