"""Benchmark: EinsumLinear against nn.Linear and the strongest references we have.

For Monarch (no ρ) and BTT with n_ρ = 2, 4, 16 (r = log n_ρ / log d), each width d and each
batch, it times the forward pass (under ``no_grad``) and forward + backward in float32 and
compares :class:`einspace.nn.EinsumLinear` (``ours``) with:

* ``dense``: ``nn.Linear(d, d)`` (the layer being replaced; its MACs set ``theory``);
* ``einsum1``: one ``torch.einsum`` call of the realization's equation (torch picks the
  contraction path), autograd for the backward pass;
* ``oe-path``: ``opt_einsum.contract_expression`` of the same equation, torch backend;
* ``einsum2``: the plain two-einsum reference, one ``torch.einsum`` per factor in the
  sequential order, no extra copies, autograd for the backward pass;
* ``ein2-laid``: the same two einsums with each factor stored in the order its einsum
  reads it (batch classes, contracted, new), so no weight is copied per call;
* ``fly``: the papers' kernel, HazyResearch fly's ``BlockdiagButterflyMultiply`` as
  Compute Better Spent runs it (re-implemented in :class:`_FlyMultiply`, with its
  pre-transposed output buffers and hand-written backward pass), for Monarch and BTT. It
  reads its input with the first factor's batch class outermost, as in its own network;
  that layout is made once, outside the timing; ``--fly-original PATH`` adds ``fly-orig``,
  the original's own code loaded from a fly checkout you fetched, to check the
  re-implementation's speed;
* ``compiled`` (with ``--compile``): ``torch.compile(ours, fullgraph=True)``.

Every implementation computes the same map from the same factors (checked at start-up).
Timing interleaves the implementations inside each repetition (so load from other
processes hits all alike) after two warm-up calls each. Before each timed call the CPU
caches are put in one state for all (``--caches``): ``cold`` (the default) writes a buffer
twice the last-level cache first, as a layer inside a network finds them; ``warm`` runs the
same implementation once more untimed, as when it is timed alone. (Timed back to back
without this, an implementation finds what the one before it left: one that follows
``nn.Linear`` at d = 4096 finds the caches full of its 64 MB weight and gradient and its
own data evicted, while one that follows a small reference may find its own weights still
cached.) Per implementation a row gives the
min, median and IQR (interquartile range) of the milliseconds, ``!`` when the IQR exceeds
20 % of the median, and ``ours×``: how many times faster ``ours`` is, as the median (and
IQR) of the per-repetition ratio ``t_impl / t_ours`` (both measured in the same
repetition). ``theory`` is dense MACs / structure MACs; ``of theory`` is ours' speedup over
dense divided by it. On a shared machine absolute times move a lot; compare ratios
measured in one run.

Memory: for forward + backward, ``saved MB`` is the activation memory autograd keeps for
the backward pass, measured with ``torch.autograd.graph.saved_tensors_hooks`` (the bytes of
every distinct storage packed for backward, parameters excluded); the input counts, as
``nn.Linear`` saves it too.

``--device cuda`` runs everything on a GPU: each timed call is synchronized, and cold
caches mean its L2 was overwritten first.

Run: ``python benchmarks/layers.py`` (the full grid: tens of minutes on 2 shared cores) or
``--quick`` (d = 4096 at batch 256 and one proxy shape, a couple of minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import opt_einsum
import torch
from torch import nn

from einspace import Structure
from einspace.hypergraph import sequential_steps
from einspace.nn import EinsumLinear
from einspace.nn.widths import resize_last
from einspace.realization import LETTERS, Realization

IMPLS = (
    "dense",
    "ours",
    "compiled",
    "einsum1",
    "oe-path",
    "einsum2",
    "ein2-laid",
    "fly",
    "fly-orig",
)


# ----------------------------------------------------------------------------- references
class _Reference(nn.Module):
    """Common part: the layer's core factors as parameters, the input resized to the
    realization's padded width, the output resized back (as EinsumLinear does)."""

    def __init__(self, layer: EinsumLinear) -> None:
        super().__init__()
        self.r: Realization = layer.realization
        self.weights = nn.ParameterList(
            nn.Parameter(w.detach().clone().contiguous()) for w in layer.core_factors()
        )
        self.in_shape = tuple(self.r.class_sizes[p] for p in self.r.input_positions)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The input as this implementation reads it (laid out once, outside the timing)."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = resize_last(x, self.r.padded_in).reshape(-1, *self.in_shape)
        y = self.contract(t, list(self.weights)).reshape(x.shape[0], self.r.padded_out)
        return resize_last(y, self.r.d_out)

    def contract(self, t: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


def _equation(r: Realization) -> str:
    """The realization's equation with the token axis ``z`` on x and y."""
    lhs, rhs = r.einsum.split("->")
    x, *factors = lhs.split(",")
    return ",".join(["z" + x.lstrip("z"), *factors]) + "->z" + rhs.lstrip("z")


class OneEinsum(_Reference):
    """One ``torch.einsum`` call of the whole equation."""

    def contract(self, t: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
        return torch.einsum(_equation(self.r), t, *ws)


class OptEinsumPath(_Reference):
    """``opt_einsum.contract_expression`` (optimal path), torch backend; one expression
    per batch size, built on first use."""

    def __init__(self, layer: EinsumLinear) -> None:
        super().__init__(layer)
        self._exprs: dict[int, Any] = {}

    def contract(self, t: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
        expr = self._exprs.get(t.shape[0])
        if expr is None:
            shapes = [tuple(t.shape), *(tuple(w.shape) for w in ws)]
            expr = opt_einsum.contract_expression(_equation(self.r), *shapes, optimize="optimal")
            self._exprs[t.shape[0]] = expr
        return expr(t, *ws, backend="torch")


class TwoEinsum(_Reference):
    """One ``torch.einsum`` per factor in the sequential order (the plain reference)."""

    def __init__(self, layer: EinsumLinear) -> None:
        super().__init__(layer)
        r = self.r
        live = "z" + "".join(LETTERS[p] for p in r.input_positions)
        self.equations: list[tuple[int, str]] = []
        for st in sequential_steps(r.family.classes, r.k, r.order):
            fac = "".join(LETTERS[p] for p in r.factor_positions[st.factor])
            keep = sorted((set(live) | set(fac)) - {"z"})
            out = "z" + "".join(c for c in keep if LETTERS.index(c) not in st.contracted)
            self.equations.append((st.factor, f"{live},{fac}->{out}"))
            live = out
        self.final = f"{live}->z" + "".join(LETTERS[p] for p in r.output_positions)

    def contract(self, t: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
        for factor, eq in self.equations:
            t = torch.einsum(eq, t, ws[factor])
        return torch.einsum(self.final, t)


class TwoEinsumLaid(TwoEinsum):
    """The two-einsum reference with each factor stored in the order its einsum reads it:
    the batch classes (shared with the live tensor and kept) first, then the contracted
    ones, then the new ones. ``torch.einsum`` then hands the weight to ``bmm`` as a view."""

    def __init__(self, layer: EinsumLinear) -> None:
        super().__init__(layer)
        laid: list[torch.Tensor] = [w.detach() for w in self.weights]
        equations = []
        for factor, eq in self.equations:
            live, rest = eq.split(",")
            fac, out = rest.split("->")
            batch = [c for c in live if c in fac and c in out]
            contracted = [c for c in live if c in fac and c not in out]
            order = batch + contracted + [c for c in fac if c not in live]
            laid[factor] = laid[factor].permute([fac.index(c) for c in order]).contiguous()
            equations.append((factor, f"{live},{''.join(order)}->{out}"))
        self.equations = equations
        self.weights = nn.ParameterList(nn.Parameter(w) for w in laid)


class _FlyMultiply(torch.autograd.Function):
    """Block-diagonal butterfly multiply as HazyResearch fly writes it (and Compute Better
    Spent runs it for Monarch): ``x (z, k·p)``, ``w1 (k, q, p)``, ``w2 (l, s, r)`` with
    ``k·q = r·l``; ``y (z, s·l)`` (``l`` is ``lb`` in the code).

    What makes it fast, kept here: each ``bmm`` writes into an empty ``(z, batch, n)``
    buffer seen as ``(batch, z, n)``, so the tokens stay the outer axis of every
    intermediate and the batch views need no copy; between the two products one copy
    regroups ``(k·q) = (r·l)`` into ``(l, r)`` order per token; the output is read off
    the second buffer with one permuting copy. The backward pass mirrors it: one copy of
    the incoming gradient into ``(z, l, s)``, the middle gradient written into a
    ``(z, l, r)`` buffer and regrouped by one copy, the input gradient written straight
    into its ``(z, k, p)`` memory. The weight gradients are plain ``bmm`` results. (The
    original casts to half precision under CUDA autocast; this benchmark runs float32.)
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        k, q, p = w1.shape
        lb, s, r = w2.shape
        z = x.shape[0]
        xb = x.reshape(z, k, p).transpose(0, 1)  # (k, z, p), a view
        h = x.new_empty(z, k, q).transpose(0, 1)  # memory (z, k, q)
        torch.bmm(xb, w1.transpose(1, 2), out=h)
        # (z, k·q) = (z, r, l) → memory (z, l, r), seen as (l, z, r)
        h = h.transpose(0, 1).reshape(z, r, lb).transpose(1, 2).contiguous().transpose(0, 1)
        o = x.new_empty(z, lb, s).transpose(0, 1)  # memory (z, l, s)
        torch.bmm(h, w2.transpose(1, 2), out=o)
        ctx.save_for_backward(x, w1, w2, h)
        return o.permute(1, 2, 0).reshape(z, s * lb)  # (z, s, l): the one output copy

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w1, w2, h = ctx.saved_tensors
        k, q, p = w1.shape
        lb, s, r = w2.shape
        z = x.shape[0]
        go = gy.reshape(z, s, lb).transpose(1, 2).contiguous().transpose(0, 1)  # (l, z, s)
        gw2 = torch.bmm(go.transpose(1, 2), h)  # (l, s, r)
        gh = x.new_empty(z, lb, r).transpose(0, 1)  # memory (z, l, r)
        torch.bmm(go, w2, out=gh)
        # (z, l, r) → memory (z, r, l) = (z, k, q), seen as (k, z, q)
        gh = gh.transpose(0, 1).transpose(1, 2).contiguous().reshape(z, k, q).transpose(0, 1)
        gx = x.new_empty(z, k, p)
        torch.bmm(gh, w1, out=gx.transpose(0, 1))
        gw1 = torch.bmm(gh.transpose(1, 2), x.reshape(z, k, p).transpose(0, 1))  # (k, q, p)
        return gx.reshape(z, k * p), gw1, gw2


def fly_fits(r: Realization) -> bool:
    """Whether the fly kernel computes ``r``: Monarch or BTT (two factors, in that order)."""
    return r.einsum in ("zab,abd,bcd->zcd", "zab,abde,bcde->zcd") and tuple(r.order) == (0, 1)


class FlyKernel(_Reference):
    """HazyResearch fly's ``BlockdiagButterflyMultiply`` (the kernel of Monarch and of
    Compute Better Spent's Monarch layers), re-implemented in :class:`_FlyMultiply`.

    It takes the structure with its first factor batched over the *outer* input class: our
    x (α, γ), A (α, γ, φ[, ρ]), B (γ, ε, φ[, ρ]), y (ε, φ) become fly's x (k = γ, p = α),
    w1 (k = γ, q = ρ·φ, p = α), w2 (l = φ, s = ε, r = γ·ρ), y (s = ε, l = φ). So the
    kernel reads an input whose classes come in (γ, α) order: :meth:`prepare` lays it out
    so, once, outside the timing (in the kernel's own network every layer's input comes
    that way). With ρ it computes BTT as well (the intermediate (γ, ρ, φ) regroups into
    l = φ, r = (γ, ρ)).
    """

    def __init__(self, layer: EinsumLinear) -> None:
        super().__init__(layer)
        s = self.r.sizes
        self.sizes = (s["α"], s["γ"], s["ε"], s["φ"], s.get("ρ", 1))
        na, ng, ne, nf, nr = self.sizes
        a, b = (w.detach() for w in self.weights)
        if a.dim() == 3:  # Monarch: no ρ axis
            a, b = a.unsqueeze(-1), b.unsqueeze(-1)
        w1 = a.permute(1, 3, 2, 0).reshape(ng, nr * nf, na)  # A (α, γ, φ, ρ) → (γ, ρφ, α)
        w2 = b.permute(2, 1, 0, 3).reshape(nf, ne, ng * nr)  # B (γ, ε, φ, ρ) → (φ, ε, γρ)
        self.weights = nn.ParameterList(
            [nn.Parameter(w1.contiguous()), nn.Parameter(w2.contiguous())]
        )

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The input with its classes in the kernel's (γ, α) order."""
        na, ng = self.sizes[:2]
        t = resize_last(x.detach(), self.r.padded_in).reshape(-1, na, ng)
        return t.transpose(1, 2).reshape(x.shape[0], -1).requires_grad_(x.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.multiply(x, *self.weights)
        return resize_last(y, self.r.d_out)

    multiply: Callable[..., torch.Tensor] = staticmethod(_FlyMultiply.apply)


def original_fly(path: str) -> type[FlyKernel]:
    """:class:`FlyKernel` running fly's own ``BlockdiagButterflyMultiply``, loaded from
    ``path`` (``src/models/layers/blockdiag_butterfly_multiply.py`` of a fly checkout you
    fetched; this project ships none of its code), to time our re-implementation against."""
    import importlib.util
    import sys
    import types

    # the file imports einops for its slow reference function only
    sys.modules.setdefault("einops", types.SimpleNamespace(rearrange=None))  # type: ignore[arg-type]
    spec = importlib.util.spec_from_file_location("fly_original", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--fly-original {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class OriginalFly(FlyKernel):
        multiply = staticmethod(module.BlockdiagButterflyMultiply.apply)

    return OriginalFly


# ----------------------------------------------------------------------------- measuring
def saved_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x)
    y.sum().backward()
    module.zero_grad(set_to_none=True)
    x.grad = None
    return sum(seen.values())


def _runner(module: nn.Module, x: torch.Tensor, backward: bool) -> Callable[[], object]:
    if not backward:

        def forward() -> object:
            with torch.no_grad():
                return module(x)

        return forward
    gy = torch.ones(x.shape[0], module(x).shape[-1], device=x.device)

    def both() -> object:
        y = module(x)
        y.backward(gy)
        module.zero_grad(set_to_none=True)
        x.grad = None
        return None

    return both


def last_level_cache_bytes() -> int:
    """The largest CPU cache this machine reports (Linux sysfs), or 32 MiB."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        with contextlib.suppress(ValueError):
            sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes, default=32 * 2**20)


class CacheState:
    """What each timed call finds in the caches: ``cold`` (a buffer twice the last-level
    cache was written just before: nothing of the implementation is cached, as for a layer
    inside a network, whose neighbours' weights and activations pass through in between) or
    ``warm`` (the same implementation ran just before, untimed: its weights are cached, as
    when it is timed alone). Either way every implementation finds the same state; timing
    them back to back instead lets each find what the one before it left. On a GPU the
    last-level cache is its L2, and every timed call is synchronized."""

    def __init__(self, state: str, device: torch.device | None = None) -> None:
        self.state = state
        self.device = device or torch.device("cpu")
        cuda = self.device.type == "cuda"
        cache = torch.cuda.get_device_properties(self.device).L2_cache_size if cuda else None
        size = (cache or last_level_cache_bytes()) // 2  # float32 elements: twice the cache
        self._buffer = torch.zeros(size, device=self.device) if state == "cold" else None

    def prepare(self, fn: Callable[[], object]) -> None:
        if self._buffer is not None:
            self._buffer.add_(1.0)
        else:
            fn()
        self.sync()

    def sync(self) -> None:
        """Wait for the device to finish (a no-op on CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def measure(
    fns: list[Callable[[], object]], repeats: int, budget: float, caches: CacheState
) -> list[list[float]]:
    """Seconds of each of ``fns`` per repetition, interleaved, after two warm-ups each, each
    timed call prepared by ``caches``; stops after ``budget`` seconds (at least 5
    repetitions)."""
    for fn in fns:
        fn()
        fn()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    for rep in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            caches.prepare(fn)
            t0 = time.perf_counter()
            fn()
            caches.sync()
            ts.append(time.perf_counter() - t0)
        if rep >= 4 and time.perf_counter() - start > budget:
            break
    return times


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, IQR)."""
    if len(values) < 2:
        return values[0], values[0], 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return min(values), statistics.median(values), q3 - q1


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"CPU, {torch.get_num_threads()} threads"


def structures(d: int) -> dict[str, Structure]:
    """Monarch and BTT with n_ρ = 2, 4, 16 at width d."""
    out = {"monarch": Structure.named("monarch")}
    for n in (2, 4, 16):
        out[f"btt(n_ρ={n})"] = Structure.named("btt", r=math.log(n) / math.log(d))
    return out


def prepared(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``module`` reads it (a reference may want its input classes reordered)."""
    return module.prepare(x) if isinstance(module, _Reference) else x


def _check_same_map(mods: dict[str, nn.Module], d: int, device: torch.device) -> None:
    x = torch.randn(8, d, device=device)
    with torch.no_grad():
        ref = mods["ours"](x)
        for name, m in mods.items():
            y = m(prepared(m, x))
            if name != "dense" and not torch.allclose(y, ref, rtol=1e-3, atol=1e-4):
                raise SystemExit(f"{name} computes a different map than EinsumLinear")


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[1024, 4096])
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 16, 256, 4096])
    parser.add_argument("--proxy-dims", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--proxy-rows", type=int, default=2048)
    parser.add_argument("--only", nargs="*", help="substrings of structure names to run")
    parser.add_argument("--skip", nargs="*", default=[], choices=IMPLS[3:])
    parser.add_argument(
        "--fly-original",
        metavar="PATH",
        help="also time fly's own blockdiag_butterfly_multiply.py from a checkout (fly-orig)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add ours under torch.compile(fullgraph=True) (inductor; compiles per shape)",
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per row, about")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument(
        "--caches",
        choices=["cold", "warm"],
        default="cold",
        help="what each timed call finds in the CPU caches (see CacheState)",
    )
    parser.add_argument("--quick", action="store_true", help="d=4096 batch 256, proxy d=128")
    args = parser.parse_args()
    if args.quick:
        args.dims, args.batches, args.proxy_dims, args.repeats = [4096], [256], [128], 9
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here; use --device cpu")
    caches = CacheState(args.caches, device)
    shapes = [(d, b) for d in args.dims for b in args.batches]
    shapes += [(d, args.proxy_rows) for d in args.proxy_dims]
    print(
        f"torch {torch.__version__}, {_device_name(device)}, float32, "
        f"{args.caches} caches; times in ms; "
        "ours× = t_impl / t_ours: per-repetition median [IQR], and min/min; "
        "! = IQR > 20 % of median"
    )
    header = (
        f"{'structure':<12} {'d':>5} {'batch':>5} {'pass':<7} {'impl':<9} {'min':>9} "
        f"{'median':>9} {'IQR':>8}   {'ours× median [IQR]':>18} {'min/min':>7}  {'saved MB':>8}"
    )
    losses: list[tuple[str, int, int, str, float, float, float]] = []
    behind_fly: list[tuple[str, int, int, str, float]] = []
    for d, batch in shapes:
        dense = nn.Linear(d, d, bias=False, device=device)
        x = torch.randn(batch, d, device=device)
        for name, s in structures(d).items():
            if args.only and not any(o in name for o in args.only):
                continue
            layer = EinsumLinear(d, d, s, bias=False, device=device)
            r = layer.realization
            mods: dict[str, nn.Module] = {"dense": dense, "ours": layer}
            if args.compile:
                mods["compiled"] = cast(nn.Module, torch.compile(layer, fullgraph=True))
            refs = {"einsum1": OneEinsum, "oe-path": OptEinsumPath}
            refs |= {"einsum2": TwoEinsum, "ein2-laid": TwoEinsumLaid, "fly": FlyKernel}
            if args.fly_original:
                refs["fly-orig"] = original_fly(args.fly_original)
            for key, cls in refs.items():
                if key not in args.skip and (not key.startswith("fly") or fly_fits(r)):
                    mods[key] = cls(layer)
            _check_same_map(mods, d, device)
            theory = d * d / r.macs()
            print(f"\n{name} at d={d} (sizes {r.sizes}), batch {batch}: theory {theory:.2f}×")
            print(header)
            for bw in (False, True):
                pas = "fwd+bwd" if bw else "fwd"
                xs = x.detach().clone().requires_grad_(bw)
                runs = measure(
                    [_runner(m, prepared(m, xs), bw) for m in mods.values()],
                    args.repeats,
                    args.budget,
                    caches,
                )
                ours = runs[1]
                mem = (
                    {k: saved_bytes(m, prepared(m, xs)) / 2**20 for k, m in mods.items()}
                    if bw
                    else {}
                )
                summary = []
                for key, ts in zip(mods, runs, strict=True):
                    lo, med, iqr = spread([1e3 * t for t in ts])
                    _, rmed, riqr = spread([a / b for a, b in zip(ts, ours, strict=True)])
                    rmin = min(ts) / min(ours)
                    flag = "!" if iqr > 0.2 * med else " "
                    mb = f"{mem[key]:8.2f}" if bw else ""
                    rtxt = "" if key == "ours" else f"{rmed:8.2f} [{riqr:5.2f}]"
                    mtxt = "" if key == "ours" else f"{rmin:7.2f}"
                    print(
                        f"{name:<12} {d:>5} {batch:>5} {pas:<7} {key:<9} {lo:>9.3f} "
                        f"{med:>9.3f} {iqr:>8.3f}{flag}  {rtxt:>18} {mtxt:>7}  {mb}",
                        flush=True,
                    )
                    if key == "dense":
                        summary.append(f"{rmed:.2f}× dense = {rmed / theory:.2f} of theory")
                        if rmin < 1 or rmed < 1:
                            losses.append((name, d, batch, pas, rmed, rmin, theory))
                    elif key != "ours":
                        summary.append(f"{rmed:.2f}× {key}")
                        if key == "fly" and rmed < 1:
                            behind_fly.append((name, d, batch, pas, rmed))
                print(f"  ours ({pas}, medians): " + ", ".join(summary))
    print("\nWhere structured layers lose to dense (ours slower by median or by min):")
    for name, d, batch, pas, rmed, rmin, theory in losses:
        why = "  (no fewer MACs than dense: theory ≤ 1)" if theory <= 1 else ""
        print(f"  {name} d={d} batch {batch} {pas}: {rmed:.2f}× (median), {rmin:.2f}× (min){why}")
    print("\nWhere ours is slower than the fly kernel (median):")
    for name, d, batch, pas, rmed in behind_fly:
        print(f"  {name} d={d} batch {batch} {pas}: {rmed:.2f}×")
    if not behind_fly:
        print("  nowhere in this grid")
    losses = [row for row in losses if row[-1] > 1]
    if not losses:
        print("\nAmong structures with fewer MACs than dense, ours loses nowhere in this grid.")
    else:
        at = sorted({(d, batch) for _, d, batch, *_ in losses})
        print(
            "\nIn words: with fewer MACs than dense, ours is still slower than nn.Linear at "
            "(d, batch) = "
            + ", ".join(f"({d}, {b})" for d, b in at)
            + ".\nWhere the batch is small a structured layer pays a fixed cost per call (several"
            "\nproducts, copies and autograd steps) that one dense GEMM does not. At proxy widths"
            "\nits blocks are too small for BLAS, so it runs the dense GEMMs nn.Linear runs plus"
            "\nbuilding the matrix from its factors and projecting the gradient back onto them."
        )


if __name__ == "__main__":
    main()
