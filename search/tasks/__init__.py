"""Proxy tasks: small, seeded problems on which structures are trained and compared.

A :class:`Task` gives training batches, a fixed evaluation set and a loss. Everything
is reproducible on CPU from the task's seed: batches are drawn on CPU (with the given
generator, or with one seeded from ``(seed, step)`` when none is given, so the batch of
a step does not depend on what ran before, which makes resumed runs see the same data)
and then moved to the requested device, so every device sees identical numbers.

Tasks are named in a registry: :func:`get_task` builds one by name, :data:`TASKS` maps
names to factories and :func:`register_task` adds one.

Registered tasks: ``mlp_regression`` (a teacher MLP), ``digits`` (scikit-learn's 8×8 digits),
``cifar10`` (the CIFAR-10 python batches from a directory the user gives) and ``lm`` (byte-level
language modelling on English text that ships with Python, or on the user's own file).

**Model kind.** A task may declare ``model_kind``: ``"mlp"`` (the default when absent: inputs
``(B, d_in)`` floats, the proxy is an MLP) or ``"lm"`` (inputs and targets are ``(B, n_ctx)``
token ids below ``d_in = d_out = vocab_size``, the proxy is a decoder-only transformer, and one
example is ``tokens_per_example = n_ctx`` tokens). :func:`model_kind` reads it.

This package imports torch; :mod:`search` itself does not import it. Its modules, one idea
each: :mod:`~search.tasks.protocol` (the :class:`Task` protocol, :func:`model_kind`, devices),
:mod:`~search.tasks.seeding` (seeds and random streams), :mod:`~search.tasks.synthetic`
(:class:`MLPRegression`), :mod:`~search.tasks.digits` (:class:`Digits`),
:mod:`~search.tasks.text` (:class:`TextLM`) with :mod:`~search.tasks.corpus` (the text it
reads), :mod:`~search.tasks.cifar` (:class:`Cifar10`) with :mod:`~search.tasks.unpickle` (the
restricted unpickler of its batches), and :mod:`~search.tasks.registry` (:data:`TASKS`,
:func:`register_task`, :func:`get_task`).
"""

from search.tasks.cifar import CIFAR10_FILES, Cifar10
from search.tasks.corpus import LM_CORPUS
from search.tasks.digits import Digits
from search.tasks.protocol import DeviceLike, Task, model_kind
from search.tasks.registry import TASKS, get_task, register_task
from search.tasks.synthetic import ACTIVATIONS, MLPRegression
from search.tasks.text import TextLM

__all__ = [
    "ACTIVATIONS",
    "CIFAR10_FILES",
    "LM_CORPUS",
    "TASKS",
    "Cifar10",
    "DeviceLike",
    "Digits",
    "MLPRegression",
    "Task",
    "TextLM",
    "get_task",
    "model_kind",
    "register_task",
]
