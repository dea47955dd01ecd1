"""The task registry: names and their factories (:data:`TASKS`), :func:`register_task` and
:func:`get_task`; the four built-in tasks are registered here."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from einspace.errors import EinspaceError, suggest
from search.tasks.cifar import Cifar10
from search.tasks.digits import Digits
from search.tasks.protocol import Task
from search.tasks.synthetic import MLPRegression
from search.tasks.text import TextLM

__all__ = ["TASKS", "get_task", "register_task"]

_REGISTRY: dict[str, Callable[..., Task]] = {}

TASKS: Mapping[str, Callable[..., Task]] = MappingProxyType(_REGISTRY)
"""Registered task names and their factories (read-only; add with :func:`register_task`)."""


def register_task(name: str, factory: Callable[..., Task]) -> None:
    """Register a task factory under ``name``; a name can be registered once.

    Examples:
        >>> "digits" in TASKS
        True
        >>> register_task("digits", Digits)
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: task 'digits' is already registered (to Digits); ...
    """
    if not isinstance(name, str) or not name:
        raise EinspaceError(f"a task name must be a non-empty string; got {name!r}")
    if name in _REGISTRY:
        owner = getattr(_REGISTRY[name], "__name__", repr(_REGISTRY[name]))
        raise EinspaceError(
            f"task {name!r} is already registered (to {owner}); choose another name. "
            f"Registered: {sorted(_REGISTRY)}"
        )
    _REGISTRY[name] = factory


def get_task(name: str, **kwargs: Any) -> Task:
    """Build the task registered as ``name`` with keyword arguments ``kwargs``.

    Raises:
        EinspaceError: an unknown name (the message lists the valid ones) or an
            argument the task does not take.

    Examples:
        >>> get_task("mlp_regression", seed=1)
        MLPRegression(d_in=8, hidden=64, depth=2, activation='tanh', n_eval=4096, seed=1)
        >>> get_task("digit")
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: unknown task 'digit'; did you mean 'digits'? Valid: ...
    """
    if name not in _REGISTRY:
        raise EinspaceError(f"unknown task {name!r}; {suggest(str(name), _REGISTRY)}")
    factory = _REGISTRY[name]
    try:
        signature = inspect.signature(factory)
        signature.bind(**kwargs)
    except TypeError as err:
        params = [p for p in signature.parameters if p != "self"]
        bad = next((k for k in kwargs if k not in signature.parameters), None)
        hint = suggest(bad, params) if bad is not None else f"valid: {params}"
        raise EinspaceError(f"task {name!r} got bad arguments {kwargs!r} ({err}); {hint}") from None
    except ValueError:  # no signature (e.g. a builtin); let the call check
        pass
    return factory(**kwargs)


register_task(MLPRegression.name, MLPRegression)
register_task(Digits.name, Digits)
register_task(Cifar10.name, Cifar10)
register_task(TextLM.name, TextLM)
