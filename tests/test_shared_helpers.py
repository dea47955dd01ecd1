"""The one definition of each shared helper: seeds, integer checks, devices, spectral σ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from einspace.errors import EinspaceError
from einspace.nn.device import resolve_device
from einspace.nn.mup import spectral_sigma
from einspace.seeds import derive_seed
from einspace.validation import check_int


@pytest.mark.parametrize("words", [(0, 1), (7, 3, 11), (2**40, 0, 5)])
def test_derive_seed_reproduces_the_three_derivations_it_replaces(words: tuple[int, ...]) -> None:
    seq = np.random.SeedSequence(list(words))
    state64 = int(seq.generate_state(1, dtype=np.uint64)[0])
    assert derive_seed(*words, bits=64) == state64  # search/tasks.py's torch.Generator seed
    assert derive_seed(*words) == state64 & (2**63 - 1)  # search/proxy.py's manual_seed
    assert derive_seed(*words, bits=32) == int(seq.generate_state(1)[0])  # search/theta.py
    assert derive_seed(*words) != derive_seed(*words[:-1], words[-1] + 1)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (
            -1,
            {"name": "--seed", "low": 0},
            "--seed = -1 must be an integer ≥ 0; the nearest valid value is --seed 0",
        ),
        (
            9,
            {"name": "k", "high": 3},
            "k = 9 must be an integer in 1 … 3; the nearest valid value is k = 3",
        ),
        (True, {"name": "n", "example": 8}, "n = True must be an integer ≥ 1; e.g. n = 8"),
        (
            2.5,
            {"name": "--d-in", "example": 64},
            "--d-in = 2.5 must be an integer ≥ 1; e.g. --d-in 64",
        ),
    ],
)
def test_check_int_names_the_value_as_typed(
    value: object, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(EinspaceError) as err:
        check_int(value, **kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_check_int_accepts_integral_values() -> None:
    assert check_int(np.int64(4), "n") == 4 and check_int(4.0, "n") == 4
    assert type(check_int(np.int64(4), "n")) is int


def test_resolve_device() -> None:
    assert resolve_device(None) == torch.device("cpu") == resolve_device("cpu")
    with pytest.raises(EinspaceError, match="unknown --device 'gpu'"):
        resolve_device("gpu", name="--device")
    if not torch.cuda.is_available():
        with pytest.raises(EinspaceError, match="CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.parametrize(("fan_in", "fan_out"), [(64, 512), (512, 64), (3, 7), (100, 100)])
def test_spectral_sigma_hand_values(fan_in: int, fan_out: int) -> None:
    """The formula written out the other way: fan_in^-1/2 · min(1, √(fan_out/fan_in))."""
    expected = fan_in**-0.5 * min(1.0, math.sqrt(fan_out / fan_in))
    assert spectral_sigma(fan_in, fan_out) == pytest.approx(expected, rel=1e-15)
