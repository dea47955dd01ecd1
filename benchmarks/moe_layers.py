"""Benchmark: BTT-MoE's two dispatch paths, against ``nn.Linear`` and plain BTT.

For each width d, each (E, k) and each number of tokens T, it times a training step of one
layer (forward + backward of ``y.square().sum()``; ``--forward`` times the forward pass under
``no_grad``) in float32 for:

* ``linear``: ``nn.Linear(d, d, bias=False)``, the dense layer being replaced;
* ``btt``: :class:`einspace.nn.EinsumLinear` of the BTT with Monarch's sizes and ρ = k, whose
  MACs equal the k selected experts' (the MoE adds the gate's ``d · E`` on top);
* ``all``: :class:`einspace.nn.BTTMoE` with ``dispatch="dense"``: every expert runs on every
  token and the unselected ones are masked (what the paper's code does);
* ``sel``: ``dispatch="sparse"``: the tokens of each expert are gathered and only the selected
  experts run (k/E of the MACs, plus a gather, a scatter-add and a Python loop over E);
* ``grp``: ``dispatch="grouped"``: the selected experts run as two batched matmuls over an
  ``(E, C, d)`` buffer of each expert's tokens (C = the most any expert got).

The gate gets random N(0, 1) weights so the tokens spread over the experts. Both dispatch
paths are checked to give the same output first. Timing interleaves the implementations
inside each repetition (rotating their order) after two warm-up calls each, so load from
other processes hits all alike; per implementation a row gives the median ms and, for the
ratios, the median and IQR of the per-repetition ratio (both measured in the same
repetition): ``grp/all`` and ``sel/all`` (< 1: running the selected experts only is
faster), ``moe/linear`` and ``moe/btt`` (``moe`` = the path ``dispatch="auto"`` picks,
:func:`einspace.nn.moe.auto_dispatch`). The last lines state, per (d, E, k), the smallest
tokens per expert (``T · k / E``) from which ``grp`` beat ``all`` at every larger size in
this run.

Run: ``python benchmarks/moe_layers.py`` (a few minutes on 2 shared cores) or ``--quick``.
It uses one torch thread unless ``--threads`` says otherwise: on a loaded machine several
threads make every small op wait for a descheduled thread, which punishes the paths made of
many small ops (the per-expert loop) far more than one big matmul.
On a shared machine absolute times move a lot; compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from einspace.moe import BTT_FAMILY
from einspace.nn import BTTMoE, EinsumLinear
from einspace.nn.moe import auto_dispatch
from einspace.structure import realize_sizes

IMPLS = ("linear", "btt", "all", "sel", "grp")


def layers(d: int, experts: int, top_k: int) -> dict[str, nn.Module]:
    """The four implementations at width d (MoE with a random gate)."""
    torch.manual_seed(0)
    moe_all = BTTMoE(d, d, experts, top_k, bias=False, dispatch="dense")
    with torch.no_grad():
        moe_all.gate.weight.normal_()
    moe_sel = BTTMoE(d, d, experts, top_k, bias=False, dispatch="sparse")
    moe_sel.load_state_dict(moe_all.state_dict())
    moe_grp = BTTMoE(d, d, experts, top_k, bias=False, dispatch="grouped")
    moe_grp.load_state_dict(moe_all.state_dict())
    n = moe_all.monarch.sizes
    btt = realize_sizes(BTT_FAMILY, {**n, "ρ": top_k}, d, d)
    return {
        "linear": nn.Linear(d, d, bias=False),
        "btt": EinsumLinear(d, d, btt, bias=False),
        "all": moe_all,
        "sel": moe_sel,
        "grp": moe_grp,
    }


def runner(module: nn.Module, x: torch.Tensor, backward: bool) -> Callable[[], None]:
    """One timed call: forward (no grad) or forward + backward."""

    def forward() -> None:
        with torch.no_grad():
            module(x)

    def train() -> None:
        module(x).square().sum().backward()
        module.zero_grad(set_to_none=True)

    return train if backward else forward


def measure(fns: dict[str, Callable[[], None]], reps: int) -> dict[str, list[float]]:
    """Seconds per call, implementations interleaved and rotated within each repetition."""
    for fn in fns.values():
        fn()
        fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def ratio(a: list[float], b: list[float]) -> tuple[float, float]:
    """Median and IQR of the per-repetition ratio a / b."""
    r = [x / y for x, y in zip(a, b, strict=True)]
    q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0]] * 3
    return statistics.median(r), q[2] - q[0]


def row(d: int, e: int, k: int, tokens: int, reps: int, backward: bool) -> tuple[float, str]:
    """Time one configuration; return (median sel/all ratio, the printed line)."""
    mods = layers(d, e, k)
    x = torch.randn(tokens, d)
    with torch.no_grad():
        for name in ("sel", "grp"):
            torch.testing.assert_close(mods[name](x), mods["all"](x), rtol=1e-4, atol=1e-4)
    times = measure({name: runner(mods[name], x, backward) for name in IMPLS}, reps)
    auto = {"dense": "all", "sparse": "sel", "grouped": "grp"}[auto_dispatch(tokens, e, k)]
    med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    grp_all = ratio(times["grp"], times["all"])
    sel_all = ratio(times["sel"], times["all"])
    lin = ratio(times[auto], times["linear"])
    btt = ratio(times[auto], times["btt"])
    mins = " ".join(f"{min(times[n]) * 1e3:7.2f}" for n in IMPLS)
    line = (
        f"{d:5d} {e:3d} {k:2d} {tokens:6d} {tokens * k / e:8.1f} | "
        + " ".join(f"{med[n]:7.2f}" for n in IMPLS)
        + f" | {mins} | {grp_all[0]:5.2f} ±{grp_all[1]:4.2f}"
        + f"  {sel_all[0]:5.2f} ±{sel_all[1]:4.2f}  {auto:>3}"
        + f"  {lin[0]:5.2f} ±{lin[1]:4.2f}  {btt[0]:5.2f} ±{btt[1]:4.2f}"
    )
    return grp_all[0], line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--experts", nargs="+", default=["4:1", "8:2", "16:2"], help="E:k")
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 64, 256, 1024, 2048])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--forward", action="store_true", help="forward only, no grad")
    parser.add_argument("--quick", action="store_true", help="d = 256, E:k = 8:2, 3 sizes")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady on a shared machine)"
    )
    args = parser.parse_args()
    if args.quick:
        args.widths, args.experts, args.tokens, args.reps = [256], ["8:2"], [32, 256, 2048], 5
    torch.set_num_threads(args.threads)
    what = "forward (no grad)" if args.forward else "forward + backward"
    print(f"BTT-MoE dispatch, {what}, float32, {torch.get_num_threads()} threads")
    print("median ms: linear btt all sel grp | min ms: the same | grp/all, sel/all, auto's pick,")
    print("auto/linear (IQR), auto/btt (IQR); per-repetition ratios")
    print("    d   E  k      T  T·k/E  | " + " ".join(f"{n:>7}" for n in IMPLS) * 2)
    crossover: dict[tuple[int, int, int], float | None] = {}
    for d in args.widths:
        for ek in args.experts:
            e, k = (int(v) for v in ek.split(":"))
            faster: list[tuple[float, bool]] = []
            for tokens in args.tokens:
                r, line = row(d, e, k, tokens, args.reps, not args.forward)
                print(line, flush=True)
                faster.append((tokens * k / e, r < 1))
            # the smallest size from which grouped beat all-experts at every larger size
            wins = [t for i, (t, _) in enumerate(faster) if all(w for _, w in faster[i:])]
            crossover[(d, e, k)] = wins[0] if wins else None
    for (d, e, k), per_expert in crossover.items():
        said = f"from {per_expert:g} tokens per expert on" if per_expert else "not at the end"
        print(f"d={d} E={e} k={k}: grouped selected-experts path faster {said}")


if __name__ == "__main__":
    main()
