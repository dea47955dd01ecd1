"""Does the μP base learning rate transfer across widths on the LM proxy?

For each structure, sweep a log-spaced grid of base learning rates at two widths of the
GPT-style LM proxy (search.lm) on the default corpus (pydoc_data.topics, bytes), train each
for the same number of Adam steps with μP (einspace.nn.param_groups, base width = the smaller
width), and print the held-out loss per learning rate, the argmin per width, and whether the
argmin moves by at most one grid step. With several seeds the loss is the median and the
spread (max - min) is printed too.

Run: ``python benchmarks/lr_transfer.py [--widths 32,128] [--steps 150] [--seeds 1]``
(minutes on a 2-core CPU at the defaults).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

# benchmarks/search.py is named like the package: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import torch  # noqa: E402

from search.lm import build_gpt  # noqa: E402
from search.tasks import TextLM  # noqa: E402


def train(
    task: TextLM, structure: str, width: int, lr: float, args: argparse.Namespace, seed: int
) -> float:
    """Final held-out loss (nats per byte) of one run; inf when it diverges."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_gpt(structure, width, task, n_layer=args.n_layer, base_width=args.base)
    opt = torch.optim.AdamW(model.optimizer_groups(lr), weight_decay=0.0)
    for step in range(args.steps):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x, y = task.train_batch(step, args.batch, generator=gen)
        loss = task.loss(model(x), y)
        if not math.isfinite(float(loss.detach())):
            return math.inf
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    x, y = task.eval_set()
    with torch.no_grad():
        value = float(task.loss(model(x), y))
    return value if math.isfinite(value) else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", default="dense,btt,monarch,low_rank")
    parser.add_argument("--widths", default="32,128")
    parser.add_argument("--lr-center", type=float, default=0.02)
    parser.add_argument("--lr-step", type=float, default=2.3, help="grid ratio")
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-ctx", type=int, default=64)
    parser.add_argument("--n-eval", type=int, default=64)
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    args.base = min(widths)
    half = args.points // 2
    grid = [args.lr_center * args.lr_step ** (k - half) for k in range(args.points)]
    print(
        f"LM proxy, {args.steps} steps × {args.batch} × {args.n_ctx} bytes, μP base width "
        f"{args.base}, seeds {args.seeds}; grid ratio {args.lr_step}"
    )
    task = TextLM(n_ctx=args.n_ctx, n_eval=args.n_eval)
    print("lr grid: " + "  ".join(f"{lr:.4g}" for lr in grid))
    for structure in args.structures.split(","):
        best: dict[int, int] = {}
        for width in widths:
            started = time.perf_counter()
            cells = []
            for lr in grid:
                losses = [train(task, structure, width, lr, args, s) for s in range(args.seeds)]
                med = statistics.median(losses)
                cells.append(
                    (
                        med,
                        max(losses) - min(losses) if all(map(math.isfinite, losses)) else math.inf,
                    )
                )
            best[width] = min(range(len(grid)), key=lambda i: cells[i][0])
            row = "  ".join(
                f"{m:.3f}±{s / 2:.3f}" if args.seeds > 1 else f"{m:.3f}" for m, s in cells
            )
            print(
                f"{structure:9s} d={width:4d}: {row}   argmin lr {grid[best[width]]:.4g} "
                f"({time.perf_counter() - started:.0f}s)"
            )
        moved = max(best.values()) - min(best.values())
        verdict = "transfers (within one grid step)" if moved <= 1 else f"moves {moved} steps"
        print(f"{structure:9s} argmin index per width {best}: {verdict}")


if __name__ == "__main__":
    main()
