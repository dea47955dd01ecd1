"""Command-line options generated from the fields of :class:`~search.settings.RunSettings`.

Examples:
    >>> import inspect
    >>> def command(settings: RunSettings = RunSettings()) -> None: ...
    >>> list(inspect.signature(settings_options(command)).parameters)[:3]
    ['task', 'task_kwargs', 'model']
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal, TypeVar, cast, get_args, get_origin, get_type_hints

import typer

from einspace.errors import EinspaceError
from search.settings import RunSettings, settings_fields

__all__ = ["settings_options"]

C = TypeVar("C", bound=Callable[..., Any])


def settings_options(command: C) -> C:
    """Replace a command's ``settings: RunSettings`` parameter by one option per field of
    :class:`~search.settings.RunSettings` (its type, default and ``help`` metadata), so
    that a new setting is a new option without touching the command.

    A ``Literal`` field becomes a choice, a mapping field a JSON option. The wrapped
    command gets the options back as one ``settings`` object.
    """
    signature = inspect.signature(command)
    hints = get_type_hints(command, include_extras=True)
    setting_hints = get_type_hints(RunSettings)
    defaults = RunSettings()
    params: list[inspect.Parameter] = []
    parsers: dict[str, Callable[[Any], Any]] = {}
    for param in signature.parameters.values():
        if param.name != "settings":
            params.append(param.replace(annotation=hints[param.name], kind=param.KEYWORD_ONLY))
            continue
        for f in settings_fields():
            kind, default, parse = _option_type(
                f.name, setting_hints[f.name], getattr(defaults, f.name)
            )
            parsers[f.name] = parse
            option = typer.Option(default, help=str(f.metadata.get("help", "")))
            params.append(
                inspect.Parameter(f.name, param.KEYWORD_ONLY, default=option, annotation=kind)
            )

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        values = {name: parse(kwargs.pop(name)) for name, parse in parsers.items()}
        return command(settings=RunSettings(**values), **kwargs)

    del wrapper.__wrapped__  # typer reads the new signature, not the command's
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return cast(C, wrapper)


def _option_type(name: str, hint: Any, default: Any) -> tuple[Any, Any, Callable[[Any], Any]]:
    """The CLI type of a setting, its CLI default, and the parser back to the setting."""
    if get_origin(hint) is Literal:
        choices = StrEnum(name, {str(v): str(v) for v in get_args(hint)})  # type: ignore[misc]
        return choices, choices(default), lambda value: str(value.value)
    if hint in (int, float, str, bool):
        return hint, default, lambda value: value
    return str, json.dumps(default), functools.partial(_json_option, name)


def _json_option(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        option = "--" + name.replace("_", "-")
        raise EinspaceError(
            f"{option} {text!r} is not JSON ({err.msg}); expected e.g. '{{\"n_eval\": 64}}'"
        ) from None
