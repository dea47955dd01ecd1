"""Sparse (mixture-of-experts) specs and their exact counts (docs/moe.md); no torch.

Two specs name a sparse computation:

* ``btt_moe:e=E,k=K`` — a **layer**: the BTT whose rank index ρ (size ``E``) is split into
  ``E`` experts, each a rank-1 BTT, i.e. a Monarch matrix (α, γ, ε, φ at Monarch's sizes), with
  a bias-free linear gate ``d_in → E`` that keeps the top ``K`` experts per token
  (docs/theory.md §5). It realizes at any widths Monarch realizes at
  (:meth:`MoESpec.realize`), giving a :class:`MoERealization` with its counts.
* ``moe:e=E,k=K`` — a **block**: the standard MoE baseline, every transformer MLP replaced by
  ``E`` dense expert MLPs behind the same kind of gate. It has no meaning for one linear
  layer, so ``realize`` refuses it (the LM proxy builds it, :mod:`search.lm`).

**Counting convention** (the paper's, kept): a token runs ``K`` of the ``E`` experts and the
gate, so its **active MACs** are ``BTT MACs × K / E + d_in · E`` (at d = 1024, E = 8, K = 2:
``2 · 32³ · 8 · 2/8 = 131,072`` for the experts plus ``8,192`` for the gate = ``139,264``);
**active params** count what a token touches, ``params × K / E + d_in · E``; **total params**
count every expert and the gate (what is trained and stored). The output bias, like
:class:`~einspace.Realization`'s counts, is left out of the weight counts.

Why only BTT: splitting a rank index ρ into experts works for any 2-factor structure that has
one, but an expert is then a rank-1 slice. For BTT that slice is a Monarch matrix — full rank
and without parameter sharing (ψ = 1, ω = 0), the paper's best-scaling corner. For low rank
it is a rank-1 matrix, for a tensor train a Kronecker product (ω = ½): experts the papers'
finding says scale worse, so einspace does not offer them (``low_rank_moe`` and the like are
refused with the reason).

Examples:
    >>> spec = MoESpec.parse("btt_moe:e=8,k=2")
    >>> str(spec), spec.experts, spec.top_k
    ('btt_moe(e=8, k=2)', 8, 2)
    >>> r = spec.realize(1024, 1024)
    >>> r.expert_macs, r.gate_macs, r.active_macs
    (131072, 8192, 139264)
    >>> r.total_params, r.active_params, r.dense_macs
    (532480, 139264, 1048576)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from einspace.errors import EinspaceError, suggest
from einspace.realization import Realization
from einspace.sizing import SizingMode
from einspace.structure import Structure, realize_sizes
from einspace.validation import check_int

__all__ = [
    "BTT_FAMILY",
    "COLLAPSE_ENTROPY",
    "MOE_KINDS",
    "MoERealization",
    "MoESpec",
    "collapsed",
    "is_moe_spec",
    "load_entropy",
    "parse_spec",
]

BTT_FAMILY = "xA,xAB,By,ABy,AB"
"""The BTT family (classes α γ ε φ ρ) whose ρ a BTT-MoE splits into experts."""

MoEKind = Literal["btt_moe", "moe"]
MOE_KINDS: tuple[MoEKind, ...] = ("btt_moe", "moe")
"""The sparse spec names: a layer (``btt_moe``) and a transformer block (``moe``)."""

_NOT_SPLIT = {
    "low_rank_moe": "its experts would be rank-1 matrices",
    "tt_moe": "its experts would be Kronecker products (ω = ½, parameter sharing)",
    "monarch_moe": "Monarch has no rank index to split (use btt_moe: its experts are Monarchs)",
    "dense_moe": "dense has no rank index; the standard MoE of dense expert MLPs is 'moe'",
}
_SPEC = re.compile(r"([A-Za-z_][\w-]*)\s*(?:[:(]\s*(.*?)\s*\)?)?")


def is_moe_spec(text: object) -> bool:
    """Whether ``text`` names a sparse spec (``btt_moe…`` or ``moe…``), not a structure.

    Examples:
        >>> is_moe_spec("btt_moe:e=8,k=2"), is_moe_spec("moe(e=4, k=1)"), is_moe_spec("btt")
        (True, True, False)
    """
    if isinstance(text, MoESpec):
        return True
    if not isinstance(text, str):
        return False
    m = _SPEC.fullmatch(text.strip())
    return bool(m) and m is not None and m.group(1).lower().replace("-", "_").endswith("moe")


@dataclass(frozen=True)
class MoESpec:
    """A sparse spec: ``kind`` (``"btt_moe"`` or ``"moe"``), ``experts`` E, ``top_k`` K.

    Examples:
        >>> MoESpec.parse("moe(e=4, k=1)")
        MoESpec(kind='moe', experts=4, top_k=1)
        >>> MoESpec.parse("btt_moe:e=4,k=5")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: 'btt_moe:e=4,k=5': k=5 exceeds e=4 ...
    """

    kind: MoEKind
    experts: int
    top_k: int = 2

    def __post_init__(self) -> None:
        if self.kind not in MOE_KINDS:
            raise EinspaceError(f"sparse spec {self.kind!r}; {suggest(str(self.kind), MOE_KINDS)}")
        for field_name, key, example in (("experts", "e", 8), ("top_k", "k", 2)):
            value = check_int(getattr(self, field_name), f"{self.kind}: {key}", example=example)
            object.__setattr__(self, field_name, value)  # an integral float becomes an int

    @classmethod
    def parse(cls, text: str) -> MoESpec:
        """Parse ``"btt_moe:e=8,k=2"``, ``"btt_moe(e=8, k=2)"`` or ``"moe:e=8"`` (k = 2).

        Raises:
            EinspaceError: an unknown name (with the nearest), a parameter other than
                ``e`` and ``k``, a missing ``e``, a value that is not an integer ≥ 1, or
                ``k > e`` — each naming the spec as typed.
        """
        m = _SPEC.fullmatch(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise EinspaceError(f"sparse spec {text!r}; expected e.g. 'btt_moe:e=8,k=2'")
        name = m.group(1).lower().replace("-", "_")
        if name in _NOT_SPLIT:
            raise EinspaceError(
                f"{text!r}: einspace builds BTT-MoE only; {_NOT_SPLIT[name]} (docs/moe.md). "
                f"Use 'btt_moe:e=8,k=2'"
            )
        if name not in MOE_KINDS:
            raise EinspaceError(f"sparse spec {text!r}: {suggest(name, MOE_KINDS)}")
        values: dict[str, int] = {}
        for pair in re.split(r"[,\s]+", m.group(2) or ""):
            if not pair:
                continue
            key, eq, value = pair.partition("=")
            if not eq or key not in ("e", "k"):
                raise EinspaceError(
                    f"{text!r}: parameter {pair!r}; expected e=<experts> and k=<experts per "
                    f"token>, e.g. '{name}:e=8,k=2'"
                )
            try:
                values[key] = int(value)
            except ValueError:
                raise EinspaceError(
                    f"{text!r}: {key} = {value!r} must be an integer ≥ 1, e.g. '{name}:e=8,k=2'"
                ) from None
        if "e" not in values:
            raise EinspaceError(f"{text!r}: give the number of experts, e.g. '{name}:e=8,k=2'")
        e, k = values["e"], values.get("k", 2)
        if k > e >= 1:
            raise EinspaceError(
                f"{text!r}: k={k} exceeds e={e} (a token uses at most the {e} experts "
                f"there are); use k ≤ {e}, e.g. '{name}:e={e},k={min(2, e)}'"
            )
        return cls(name, e, k)

    def __str__(self) -> str:
        return f"{self.kind}(e={self.experts}, k={self.top_k})"

    def realize(
        self, d_in: int, d_out: int, mode: SizingMode = "round", pad_tol: float = 0.15
    ) -> MoERealization:
        """The counts of a ``btt_moe`` layer at ``d_in → d_out``; the experts take
        Monarch's sizes under ``mode`` (``"round"`` or ``"exact"``) and ``pad_tol``.

        Raises:
            EinspaceError: a ``moe`` spec (a block, not a layer), or widths Monarch does not
                realize at.
        """
        if self.kind != "btt_moe":
            raise EinspaceError(
                f"{self} replaces a transformer block's MLP by expert MLPs; it is not a linear "
                f"layer. Use it as an LM-proxy structure, or btt_moe:e={self.experts},"
                f"k={self.top_k} for a layer"
            )
        expert = Structure.named("monarch").realize(d_in, d_out, mode=mode, pad_tol=pad_tol)
        return MoERealization.from_expert(expert, self.experts, self.top_k)


@dataclass(frozen=True)
class MoERealization:
    """A BTT-MoE layer at concrete widths: the expert (Monarch) realization, E and K.

    Attributes:
        expert: one expert's realization (a Monarch; sets init and μP fans).
        experts: E.
        top_k: K.
    """

    expert: Realization
    experts: int
    top_k: int

    @classmethod
    def from_expert(cls, expert: Realization, experts: int, top_k: int) -> MoERealization:
        """From a Monarch realization (any mode), E and K."""
        if expert.family.name != "monarch":
            raise EinspaceError(
                f"a BTT-MoE expert is a Monarch realization; got {expert.structure}"
            )
        MoESpec("btt_moe", experts, top_k)  # validates E and K
        if top_k > experts:
            raise EinspaceError(f"top_k = {top_k} exceeds experts = {experts}")
        return cls(expert, experts, top_k)

    @property
    def d_in(self) -> int:
        """Input width."""
        return self.expert.d_in

    @property
    def d_out(self) -> int:
        """Output width."""
        return self.expert.d_out

    @property
    def spec(self) -> MoESpec:
        """The spec (``btt_moe``, E, K)."""
        return MoESpec("btt_moe", self.experts, self.top_k)

    @property
    def btt(self) -> Realization:
        """The whole BTT: Monarch's α, γ, ε, φ and ρ = E."""
        n = self.expert.sizes
        sizes = {"α": n["α"], "γ": n["γ"], "ε": n["ε"], "φ": n["φ"], "ρ": self.experts}
        return realize_sizes(BTT_FAMILY, sizes, self.d_in, self.d_out)

    @property
    def params(self) -> int:
        """Weights of all E experts (the two BTT factors), gate not included."""
        return self.experts * self.expert.params

    @property
    def gate_params(self) -> int:
        """The gate's weights, ``d_in · E`` (no bias, as in the paper's code)."""
        return self.d_in * self.experts

    @property
    def total_params(self) -> int:
        """Every trained weight: all experts and the gate."""
        return self.params + self.gate_params

    @property
    def active_params(self) -> int:
        """Weights a token uses: K experts and the gate."""
        return self.top_k * self.expert.params + self.gate_params

    @property
    def btt_macs(self) -> int:
        """Sequential MACs per token of the whole BTT (all E experts)."""
        return self.experts * int(self.expert.macs())

    @property
    def expert_macs(self) -> int:
        """MACs per token of the K selected experts, ``btt_macs × K / E``."""
        return self.top_k * int(self.expert.macs())

    @property
    def gate_macs(self) -> int:
        """The gate's MACs per token, ``d_in · E``."""
        return self.d_in * self.experts

    @property
    def active_macs(self) -> int:
        """MACs per token that run: the K experts plus the gate (the paper's count)."""
        return self.expert_macs + self.gate_macs

    @property
    def dense_params(self) -> int:
        """A dense layer's weights, ``d_in · d_out``."""
        return self.d_in * self.d_out

    @property
    def dense_macs(self) -> int:
        """A dense layer's MACs per token, ``d_in · d_out``."""
        return self.d_in * self.d_out

    def summary(self) -> dict[str, object]:
        """Every count, for tables and the CLI."""
        return {
            "structure": str(self.spec),
            "experts": self.experts,
            "top_k": self.top_k,
            "d_in": self.d_in,
            "d_out": self.d_out,
            "mode": self.expert.mode,
            "sizes": self.btt.sizes,
            "expert": f"monarch {self.expert.sizes}",
            "padding": self.expert.padding,
            "total_params": self.total_params,
            "active_params": self.active_params,
            "expert_params": self.params,
            "gate_params": self.gate_params,
            "active_macs": self.active_macs,
            "expert_macs": self.expert_macs,
            "gate_macs": self.gate_macs,
            "all_experts_macs": self.btt_macs,
            "dense_params": self.dense_params,
            "dense_macs": self.dense_macs,
            "active_macs / dense": self.active_macs / self.dense_macs,
        }


def parse_spec(text: str | Structure | MoESpec) -> Structure | MoESpec:
    """A structure or a sparse spec, from what a user typed (where either is accepted).

    Examples:
        >>> parse_spec("btt_moe:e=4,k=1"), str(parse_spec("btt:r=0.5"))
        (MoESpec(kind='btt_moe', experts=4, top_k=1), 'btt(r=0.5)')
    """
    if isinstance(text, Structure | MoESpec):
        return text
    return MoESpec.parse(text) if is_moe_spec(text) else Structure.parse(text)


COLLAPSE_ENTROPY = 0.5
"""A router whose load has normalized entropy below this has collapsed (:func:`collapsed`)."""


def load_entropy(load: Sequence[float]) -> float:
    """Normalized entropy ``H(load) / log E`` of an expert load (fractions summing to 1):
    1 when every expert gets the same share, 0 when one expert gets all (E = 1: 1).

    Examples:
        >>> [round(load_entropy(x), 3) for x in ([0.25] * 4, [1, 0, 0, 0], [0.5, 0.5, 0, 0])]
        [1.0, 0.0, 0.5]
    """
    values = [float(v) for v in load]
    total = sum(values)
    if len(values) < 2 or total <= 0:
        return 1.0
    h = sum(v / total * math.log(total / v) for v in values if v > 0)
    return h / math.log(len(values))


def collapsed(load: Sequence[float], threshold: float = COLLAPSE_ENTROPY) -> bool:
    """Whether the router has collapsed: the load's normalized entropy
    (:func:`load_entropy`) is below ``threshold`` (default 0.5: the experts in use number
    fewer than about √E, e.g. fewer than 2.8 of 8).

    Examples:
        >>> collapsed([0.97, 0.01, 0.01, 0.01]), collapsed([0.4, 0.3, 0.2, 0.1])
        (True, False)
    """
    return load_entropy(load) < threshold
