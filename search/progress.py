"""What a search shows: rich progress bars with a live best-so-far table, the plan before
the spend, and the θ trials and run counts printed at the end (the caller prints the fits).

The workers, the grid, the θ study and the tuning need the display only as a
:class:`Display` (the protocol below); :class:`ProgressDisplay` is the rich one."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from search.options import PlanFormat
    from search.result import SearchResult
    from search.run_plan import SearchPlan

__all__ = ["Display", "ProgressDisplay", "print_collapsed", "print_plan", "print_result"]


class Display(Protocol):
    """What a phase of a search reports to: worker messages (:data:`search.workers.Emit`),
    and the crashes and deaths of worker processes it collected."""

    crashes: list[str]
    killed: list[str]

    def begin(self, title: str, total: int, workers: int) -> None:
        """Start a phase with ``total`` items."""

    def handle(self, message: tuple[Any, ...]) -> None:
        """React to a worker message."""


class ProgressDisplay:
    """rich progress bars (overall + one per worker) and a live best-so-far table."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.best: dict[str, tuple[float, str]] = {}
        self.counts: dict[str, int] = {}
        self._live: Any = None
        self._progress: Any = None
        self._overall: Any = None
        self._rows: dict[int, Any] = {}
        self.crashes: list[str] = []
        self.killed: list[str] = []
        self.outcomes: dict[str, str] = {}
        self.devices: dict[int, str] = {}  # worker → its GPU, when spread over several

    def __enter__(self) -> ProgressDisplay:
        if not self.enabled or not self.console.is_terminal:
            # in a pipe or file a live display can only print its last frame, stray progress
            # rows and all, without a final newline: print plain lines instead
            return self
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._live = Live(self._render(), console=self.console, refresh_per_second=4)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)
            self._live = None
        elif self.enabled and self.best:
            self.console.print(self._render())

    def begin(self, title: str, total: int, workers: int) -> None:
        """Start a phase (θ trials or grid) with ``total`` items."""
        if self._progress is None:
            self.console.print(f"{title}: {total} to do with {workers} worker(s)")
            return
        for task in list(self._progress.tasks):
            self._progress.remove_task(task.id)
        self._overall = self._progress.add_task(title, total=total)
        self._rows = {
            i: self._progress.add_task(f"  worker {i}", total=None) for i in range(workers)
        }
        self._refresh()

    def handle(self, message: tuple[Any, ...]) -> None:
        """React to a worker message (see :func:`search.grid.grid_loop` and the θ objective)."""
        kind, wid = message[0], int(message[1])
        if kind == "start" and self._progress is not None:
            label, steps = message[2], message[3]
            row = self._rows.get(wid)
            if row is not None:
                on = f" [{self.devices[wid]}]" if wid in self.devices else ""
                self._progress.reset(row, total=steps, description=f"  w{wid}{on} {label}")
        elif kind == "point" and self._progress is not None:
            row = self._rows.get(wid)
            if row is not None:
                self._progress.update(row, completed=message[3])
        elif kind == "done":
            summary = message[2]
            if summary["status"] == "busy":  # another worker is on it: its message will come
                if summary.get("error"):  # this worker lost it past its lease
                    self.console.print(f"[yellow]{summary['error']}[/yellow]", highlight=False)
                self._refresh()
                return
            label = summary["status"] + (" (stored)" if summary["cached"] else "")
            previous = self.outcomes.get(summary["run_id"])
            if previous is None:
                self._advance()
            if previous is None or not summary["cached"]:  # trained here beats stored
                self.outcomes[summary["run_id"]] = label
            loss = summary["final_eval_loss"]
            key = str(summary["structure"])
            if loss is not None and summary["status"] == "finished":
                where = f"w{summary['width']} s{summary['seed']}"
                if key not in self.best or loss < self.best[key][0]:
                    self.best[key] = (float(loss), where)
        elif kind == "trial":
            _, _, number, spec, status, value = message
            self._count(f"trial {status}")
            if value is not None and status == "finished":
                key = f"θ {spec}"
                if key not in self.best or value < self.best[key][0]:
                    self.best[key] = (float(value), f"trial {number}")
            if status != "busy":
                self._advance()
        elif kind == "device":
            self.devices[wid] = str(message[2])
            if self._progress is None and self.enabled:
                self.console.print(f"worker {wid} on {message[2]}", highlight=False)
        elif kind == "rejected":
            self._count("θ rejected")
        elif kind == "crashed":
            self.crashes.append(f"worker {wid}: {str(message[2]).strip().splitlines()[-1]}")
            self.console.print(f"[red]worker {wid} crashed:[/red]\n{message[2]}")
        elif kind == "killed":
            self.killed.append(str(message[2]))
            self.console.print(f"[red]{message[2]}[/red]", highlight=False)
        elif kind == "interrupted":
            self._count("interrupted")
        self._refresh()

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _advance(self) -> None:
        if self._progress is not None and self._overall is not None:
            self._progress.advance(self._overall)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        table = Table(title="best so far (eval loss)", show_lines=False)
        table.add_column("structure")
        table.add_column("eval loss", justify="right")
        table.add_column("where")
        for key, (loss, where) in sorted(self.best.items(), key=lambda kv: kv[1][0])[:10]:
            table.add_row(key, f"{loss:.4g}", where)
        tally = dict(self.counts)
        for label in self.outcomes.values():
            tally[label] = tally.get(label, 0) + 1
        counts = ", ".join(f"{v} {k}" for k, v in sorted(tally.items())) or "—"
        return Group(self._progress, table, f"runs: {counts}") if self._progress else table


def print_result(console: Console, result: SearchResult) -> None:
    """Print what a search did: the θ trials, the promoted structures, the run counts."""
    from rich.table import Table

    if result.trials is not None and len(result.trials):
        shown = result.trials.sort_values("value", na_position="last").head(10)
        table = Table(title=f"θ trials (study {result.study}; pruned: last reported loss)")
        for col in ("number", "state", "eval loss", "θ"):
            table.add_column(col, no_wrap=col != "θ", overflow="fold")
        table.add_column("rejection", overflow="fold")
        for trial in shown.to_dict("records"):
            value = trial["value"]
            shown_value = "—" if value is None or math.isnan(value) else f"{value:.4g}"
            table.add_row(
                str(trial["number"]),
                str(trial["state"]),
                shown_value,
                str(trial["theta"]),
                str(trial["rejection"] or ""),
            )
        console.print(table)
        if result.promoted:
            console.print(f"promoted to the grid: {', '.join(result.promoted)}", highlight=False)
    if result.runs.empty:
        console.print(f"no grid runs (θ search only); store {result.store}", highlight=False)
        return
    statuses = result.runs["status"].value_counts().to_dict()
    console.print(
        f"runs: {', '.join(f'{v} {k}' for k, v in statuses.items()) or 'none'}; store "
        f"{result.store}; {result.wall_s:.1f} s",
        highlight=False,
    )
    print_collapsed(console, result.runs)
    if result.interrupted:
        console.print(
            "[yellow]interrupted[/yellow]: finished runs are kept; run the same command again "
            "to resume the others"
        )


def print_collapsed(console: Console, runs: pd.DataFrame) -> None:
    """Flag the runs whose mixture-of-experts routers collapsed (the grid's ``collapsed``
    column > 0: that fraction of their routed layers sends almost every token to the same
    few experts at their last point); nothing when none did."""
    if "collapsed" not in runs:
        return
    bad = runs[runs["collapsed"].fillna(0.0) > 0]
    if bad.empty:
        return
    shown = ", ".join(
        f"{r['structure']} @{r['width']} s{r['seed']} {int(r['steps'])} steps "
        f"({r['collapsed']:.0%} of layers)"
        for r in bad.head(8).to_dict("records")
    )
    more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
    console.print(
        f"[yellow]experts collapsed[/yellow] in {len(bad)} of {len(runs)} runs (load entropy "
        f"< 0.5 of its maximum at the last point): {shown}{more}; raise --aux-weight or lower "
        f"--lr",
        highlight=False,
    )


def print_plan(console: Console, plan: SearchPlan, form: PlanFormat = "table") -> None:
    """Print every planned run and the total FLOPs (``--dry-run``): a table, or CSV.

    Examples:
        >>> import io
        >>> from rich.console import Console
        >>> from search.run_plan import SearchPlan
        >>> out = io.StringIO()
        >>> print_plan(Console(file=out, width=200), SearchPlan(()), "csv")
        >>> out.getvalue().splitlines()[0]
        'role,structure,width,seed,lr,params,tokens_per_param,steps,branch_step,tokens,flops,run_id,parent'
    """
    if form == "csv":
        console.file.write(plan.to_csv())
        return
    from rich.table import Table

    table = Table(title="planned runs (a branch resumes from its trunk at its branch step)")
    columns = ("role", "structure", "width", "seed", "lr", "params", "tpp", "steps", "from")
    for col in (*columns, "tokens", "FLOPs", "trunk"):
        left = col in ("role", "structure")
        table.add_column(col, justify="left" if left else "right", no_wrap=col != "structure")
    for run in plan.runs:
        row = run.row()
        table.add_row(
            str(row["role"]),
            str(row["structure"]),
            str(row["width"]),
            str(row["seed"]),
            f"{row['lr']:.3g}",
            str(row["params"]),
            "—" if row["tokens_per_param"] is None else f"{row['tokens_per_param']:g}",
            str(row["steps"]),
            "" if row["branch_step"] is None else str(row["branch_step"]),
            f"{row['tokens']:.3g}",
            f"{row['flops']:.3g}",
            "" if row["parent"] is None else str(row["parent"])[:8],
        )
    console.print(table)
    console.print(plan.summary(), highlight=False)
