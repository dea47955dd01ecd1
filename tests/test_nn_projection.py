"""from_dense / projection: exact recovery, the truncated-SVD optimum, ALS vs closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from einspace import EinspaceError, Structure
from einspace.nn import EinsumLinear
from einspace.nn.projection import project, relative_error

EXACT = [
    ("low_rank", {"r": 0.25}, 64, 64),
    ("kronecker", {}, 64, 64),
    ("tt", {"r": 0.25}, 64, 64),
    ("monarch", {}, 64, 48),
    ("btt", {"r": 0.25}, 64, 64),
    ("block_diagonal", {}, 64, 64),
    ("dense", {}, 20, 30),
]


@pytest.mark.parametrize(("name", "kw", "d_in", "d_out"), EXACT)
@pytest.mark.parametrize("method", ["auto", "als"])
def test_recovers_weights_in_the_structure(
    name: str, kw: dict[str, float], d_in: int, d_out: int, method: str
) -> None:
    r = Structure.named(name, **kw).realize(d_in, d_out)
    w = torch.tensor(r.materialize(seed=7), dtype=torch.float32)
    layer, err = EinsumLinear.from_dense(w, Structure.named(name, **kw), method=method)  # type: ignore[arg-type]
    assert err < 1e-5
    assert layer.factors[0].dtype == torch.float32


def test_three_factor_als() -> None:
    s = Structure.from_classes({"xA": 0.5, "xB": 0.5, "Ay": 0.5, "BCy": 0.5, "BC": 0.25})
    r = s.realize(64, 64)
    w = r.materialize(seed=1)
    assert relative_error(w, r, project(w, r)) < 1e-5


def test_low_rank_is_the_truncated_svd_optimum() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((48, 64))
    r = Structure.named("low_rank", r=0.5).realize(64, 48)
    q = r.sizes["ρ"]
    s = np.linalg.svd(w, compute_uv=False)
    optimum = np.sqrt((s[q:] ** 2).sum()) / np.linalg.norm(w)
    assert relative_error(w, r, project(w, r)) == pytest.approx(optimum, rel=1e-12)
    assert relative_error(w, r, project(w, r, method="als")) == pytest.approx(optimum, rel=1e-6)


@pytest.mark.parametrize("name", ["kronecker", "btt", "tt"])
def test_closed_form_beats_or_ties_als(name: str) -> None:
    rng = np.random.default_rng(1)
    r = Structure.named(name).realize(64, 64)
    w = rng.standard_normal((64, 64))
    closed = relative_error(w, r, project(w, r, method="svd"))
    als = relative_error(w, r, project(w, r, method="als"))
    assert closed <= als + 1e-9


def test_padding_is_treated_as_missing() -> None:
    # 60 → 70 Kronecker pads x to 64 and truncates y from 8·8 = 64 < 70: the target's
    # rows 64.. are unreachable; the reachable part is recovered exactly.
    r = Structure.named("kronecker").realize(60, 70)
    w = r.materialize(seed=2)
    assert relative_error(w, r, project(w, r)) < 1e-10
    noisy = w + 0.01 * np.random.default_rng(0).standard_normal(w.shape)
    assert relative_error(noisy, r, project(noisy, r)) < 0.05


def test_bad_input() -> None:
    r = Structure.named("kronecker").realize(16, 16)
    with pytest.raises(EinspaceError, match="expects \\(d_out, d_in\\) = \\(16, 16\\)"):
        project(np.zeros((16, 8)), r)
    s3 = Structure.from_classes({"xA": 0.5, "xB": 0.5, "Ay": 0.5, "BCy": 0.5, "BC": 0.25})
    with pytest.raises(EinspaceError, match="closed form for k ≤ 2"):
        project(np.zeros((16, 16)), s3.realize(16, 16), method="svd")
    with pytest.raises(EinspaceError, match="expected \\(d_out, d_in\\)"):
        EinsumLinear.from_dense(torch.zeros(3), "monarch")
