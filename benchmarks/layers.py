"""Benchmark: EinsumLinear vs nn.Linear vs the papers' einsum-per-factor reference.

For each structure, width d and batch, times the forward pass and forward + backward in
float32 and prints, per row:

* ``dense``, ``ref``, ``ours``: median milliseconds of ``nn.Linear``, the reference and
  :class:`einspace.nn.EinsumLinear`, measured round-robin so that load from other processes
  hits the three alike;
* ``speedup``: dense / ours (realized), ``theory``: dense MACs / structure MACs,
  ``ratio``: speedup / theory, ``vs ref``: ref / ours.

The reference is written the way the papers' code is: one ``torch.einsum`` per factor in the
best sequential order, ``.contiguous()`` after each, autograd for the backward pass.

BTT and TT use a fixed rank n_ρ (``--rank``, 4 by default, as in the papers' small-rank
runs), so r = log(n_ρ)/log(d); Monarch is BTT with n_ρ = 1. Low rank runs at r = 0.5
(rank √d = 32 and 64: skinny GEMMs) and r = 0.75 (rank 181 and 512).
All layers are bias-free so the structured product alone is compared (``--bias`` adds one).

Run: ``python benchmarks/layers.py`` (full grid, several minutes on 2 cores) or ``--quick``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from einspace import Structure
from einspace.nn import EinsumLinear
from einspace.realization import LETTERS, Realization


class ReferenceEinsum(nn.Module):
    """One ``torch.einsum`` per factor, ``.contiguous()`` after each (the papers' style)."""

    def __init__(self, layer: EinsumLinear) -> None:
        super().__init__()
        r = layer.realization
        self.r = r
        self.weights = nn.ParameterList(
            nn.Parameter(w.detach().clone().contiguous()) for w in layer.core_factors()
        )
        from einspace.hypergraph import sequential_steps

        steps = sequential_steps(r.family.classes, r.k, r.order)
        live = "z" + "".join(LETTERS[p] for p in r.input_positions)
        self.equations: list[tuple[int, str]] = []
        for st in steps:
            fac = "".join(LETTERS[p] for p in r.factor_positions[st.factor])
            keep = set(live) | set(fac)
            present = sorted(keep - {"z"})
            out = "z" + "".join(
                c
                for c in present
                if (LETTERS.index(c) not in st.contracted) and (c in fac or c in live)
            )
            self.equations.append((st.factor, f"{live},{fac}->{out}"))
            live = out
        y = "z" + "".join(LETTERS[p] for p in r.output_positions)
        self.final = f"{live}->{y}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.r
        t = x.reshape(-1, *(r.class_sizes[p] for p in r.input_positions))
        for factor, eq in self.equations:
            t = torch.einsum(eq, t, self.weights[factor]).contiguous()
        t = torch.einsum(self.final, t).contiguous()
        return t.reshape(x.shape[0], r.padded_out)


def _time(fns: list[Callable[[], object]], repeats: int, budget: float) -> list[float]:
    """Median seconds of each of ``fns``, measured round-robin (so load that comes and goes
    hits all of them alike) after one warmup call each; stops early after ``budget`` s."""
    for fn in fns:
        fn()
        fn()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    for rep in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        if rep >= 2 and time.perf_counter() - start > budget:
            break
    return [statistics.median(ts) for ts in times]


def _runner(module: nn.Module, x: torch.Tensor, backward: bool) -> Callable[[], object]:
    if not backward:

        def forward() -> object:
            with torch.no_grad():
                return module(x)

        return forward
    xg = x.detach().clone().requires_grad_(True)

    def both() -> object:
        y = module(xg)
        y.backward(torch.ones_like(y))
        module.zero_grad(set_to_none=True)
        xg.grad = None
        return None

    return both


def structures(d: int, rank: int) -> dict[str, Structure]:
    """The benchmarked structures at width d."""
    r = math.log(rank) / math.log(d)
    return {
        f"btt(n_ρ={rank})": Structure.named("btt", r=r),
        "monarch": Structure.named("monarch"),
        "kronecker": Structure.named("kronecker"),
        "low_rank(r=0.5)": Structure.named("low_rank", r=0.5),
        "low_rank(r=0.75)": Structure.named("low_rank", r=0.75),
        f"tt(n_ρ={rank})": Structure.named("tt", r=r),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--rank", type=int, default=4, help="n_ρ of BTT and TT")
    parser.add_argument("--only", nargs="*", help="substrings of structure names to run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bias", action="store_true")
    parser.add_argument("--no-ref", action="store_true", help="skip the reference")
    parser.add_argument("--quick", action="store_true", help="d=1024, batch 256, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.dims, args.batches, args.repeats = [1024], [256], 3
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    header = (
        f"{'structure':<16} {'d':>5} {'batch':>5} {'pass':<7} {'dense':>9} {'ref':>9} "
        f"{'ours':>9} {'speedup':>7} {'theory':>6} {'ratio':>5} {'vs ref':>6}  plan"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, ms (median)")
    print(header)
    print("-" * len(header))
    for d in args.dims:
        dense = nn.Linear(d, d, bias=args.bias)
        for batch in args.batches:
            x = torch.randn(batch, d)
            for name, s in structures(d, args.rank).items():
                if args.only and not any(o in name for o in args.only):
                    continue
                layer = EinsumLinear(d, d, s, bias=args.bias)
                r: Realization = layer.realization
                mods: list[nn.Module] = [dense, layer]
                if not args.no_ref:
                    mods.append(ReferenceEinsum(layer))
                theory = d * d / r.macs()
                for bw in (False, True):
                    runners = [_runner(m, x, bw) for m in mods]
                    ms = [1e3 * t for t in _time(runners, args.repeats, args.budget)]
                    dense_ms, ours = ms[0], ms[1]
                    ref_ms = ms[2] if len(ms) > 2 else math.nan
                    speedup = dense_ms / ours
                    print(
                        f"{name:<16} {d:>5} {batch:>5} {'fwd+bwd' if bw else 'fwd':<7} "
                        f"{dense_ms:>9.2f} {ref_ms:>9.2f} {ours:>9.2f} {speedup:>7.2f} "
                        f"{theory:>6.1f} {speedup / theory:>5.2f} {ref_ms / ours:>6.2f}  "
                        f"{layer.plan.copies} copies",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
