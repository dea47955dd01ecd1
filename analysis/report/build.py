"""Build the report: check the inputs, assemble the five sections, write it atomically.

The report is written into a hidden temporary folder next to the destination
(``.<name>.partial-XXXX``) and renamed into place only when every file is written, so a
failure never leaves a half-written report under the requested name. An existing
destination is replaced only when it is empty or holds an earlier einspace report (marked by
a ``.einspace-report`` file); anything else is refused rather than overwritten.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from analysis.report import cost, provenance, results, space, taxonomy
from analysis.report.document import Block, Bullets, Document, Figure, Heading, Paragraph, Table
from analysis.report.search_section import search_section
from einspace.errors import EinspaceError
from einspace.realization import check_width

__all__ = ["MARKER", "report"]

MARKER = ".einspace-report"
"""File written into every report folder; only such folders are replaced by a new report."""

FACTORS = (1, 2, 3)
TOP_SHOWN = 15
TOP_CSV = 1000


def report(
    out: str | os.PathLike[str],
    factors: int = 2,
    d_in: int = 1024,
    d_out: int = 1024,
    runs: str | os.PathLike[str] | None = None,
    study: str | None = None,
    command: str | None = None,
) -> Path:
    """Write the einspace report into the folder ``out``; return the path of its index.html.

    The folder receives ``index.html`` (self-contained: inline CSS, figures as base64 PNG
    data URIs, no scripts, no network), ``report.md`` with ``img/*.png``, and
    ``tables/*.csv`` holding every table in full. Sections:

    1. **The space**: valid family counts for k = 1, 2, 3 (paper and extended space, with and
       without x↔y identified; the 5.5 million k = 3 extended families are counted only for
       ``factors=3``); the table of families with up to ``min(factors, 2)`` factors with
       their symbolic ν, ω, ψ; for ``factors=3`` a summary of the 40 378 k = 3 families
       (full table in CSV only).
    2. **The taxonomy map**: families at their balanced point and the named structures in
       (ω, ψ, ν): three 2-D projections and a 3-D view.
    3. **Cost at the given width**: params vs MACs of every exact realization at
       (d_in, d_out) with the full-rank Pareto front, and the top candidates of
       ``search.score``.
    4. **Search results** (only with ``runs``): loss-vs-compute curves with fitted
       frontiers, the fitted laws with standard errors, compute multipliers against dense,
       the fitted exponent against ω and ψ, and the diverged or failed runs.
    5. **How it was made**: command, date, inputs and package versions.

    Args:
        out: the report folder. Created if absent; replaced if it holds an earlier report.
        factors: the largest number of factors covered in detail (1, 2 or 3).
        d_in: input width for the cost section.
        d_out: output width for the cost section.
        runs: a run store (SQLite path or database URL) for the results section.
        study: a study (sweep) name in the run store; all runs when None.
        command: the command line to record (the CLI passes its own).

    Raises:
        EinspaceError: factors not in {1, 2, 3}; a bad width; ``study`` without ``runs``; a
            run store that does not exist, is empty or is not a store; a study that is not
            in the store (the message lists those present); an output folder that cannot
            be written or that holds other files.

    Examples:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / "rep"
        >>> index = report(folder, factors=1, d_in=16, d_out=16)  # doctest: +SKIP
        >>> index.name, (folder / "report.md").exists()  # doctest: +SKIP
        ('index.html', True)
    """
    started = time.perf_counter()
    arguments = {
        "out": os.fspath(out),
        "factors": factors,
        "d_in": d_in,
        "d_out": d_out,
        "runs": None if runs is None else os.fspath(runs),
        "study": study,
    }
    factors = _check_factors(factors)
    d_in, d_out = check_width(d_in, "d_in"), check_width(d_out, "d_out")
    if study is not None and runs is None:
        raise EinspaceError(
            f"study {study!r} was given without a run store; pass runs=<path or URL> "
            f"(`--runs FILE`) as well"
        )
    if study is not None and (not isinstance(study, str) or not study.strip()):
        raise EinspaceError(f"study = {study!r} must be a non-empty study name")
    target = _check_destination(out)
    data: results.RunData | None = None
    if runs is not None:
        store = results.open_store(runs)
        try:
            data = results.load_runs(store, study)
        finally:
            store.close()
    staging = _staging_folder(target)
    try:
        doc = Document("einspace report")
        settings: dict[str, object] = {"factors": factors, "d_in": d_in, "d_out": d_out}
        doc.add(*_intro(factors, d_in, d_out, data))
        doc.add(*_space_section(factors))
        doc.add(*_taxonomy_section(factors))
        doc.add(*_cost_section(factors, d_in, d_out))
        if data is not None:
            doc.add(*search_section(data))
        settings["build time"] = f"{time.perf_counter() - started:.1f} s"
        table = provenance.provenance_table(
            command or provenance.default_command(arguments),
            data.location if data else None,
            study,
            settings,
        )
        doc.add(
            Heading("How it was made"),
            Table("provenance", table, "Inputs, environment and versions.", max_rows=None),
        )
        try:
            doc.write(staging)
            (staging / MARKER).write_text("einspace report\n", encoding="utf-8")
        except OSError as err:
            raise EinspaceError(f"cannot write the report into {str(staging)!r}: {err}") from None
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / "index.html"


# --------------------------------------------------------------------------- checks


def _check_factors(factors: object) -> int:
    if isinstance(factors, bool) or not isinstance(factors, int) or factors not in FACTORS:
        nearest = ""
        if isinstance(factors, int | float) and not isinstance(factors, bool):
            value = float(factors)
            if math.isfinite(value):
                nearest = f"; nearest valid value: {min(max(round(value), 1), 3)}"
        raise EinspaceError(f"factors = {factors!r}: the report covers 1, 2 or 3 factors{nearest}")
    return factors


def _check_destination(out: str | os.PathLike[str]) -> Path:
    """The resolved destination; refuses a file in the way or a folder of other files."""
    target = Path(out).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise EinspaceError(
            f"cannot write the report to {str(target)!r}: a file is in the way; expected a "
            f"folder name such as {str(target.with_name(target.name + '-report'))!r}"
        )
    if target.is_dir():
        try:
            entries = {p.name for p in target.iterdir()}
        except OSError as err:
            raise EinspaceError(f"cannot read the output folder {str(target)!r}: {err}") from None
        if entries and MARKER not in entries:
            raise EinspaceError(
                f"output folder {str(target)!r} already holds {len(entries)} file(s) that are "
                f"not an einspace report; pass a new or empty folder, e.g. "
                f"{str(target / 'einspace-report')!r}"
            )
    return target


def _staging_folder(target: Path) -> Path:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            staging = parent / f".{target.name}.partial-{secrets.token_hex(4)}"
            try:
                staging.mkdir()  # unlike mkdtemp, honours the umask like any new folder
            except FileExistsError:
                continue
            return staging
        raise FileExistsError(f"no free temporary name next to {target.name!r}")
    except OSError as err:
        reason = err.strerror or str(err)
        raise EinspaceError(
            f"cannot write the report to {str(target)!r}: cannot create a folder in "
            f"{str(parent)!r} ({reason}); pass an output folder in a writable place"
        ) from None


def _move_into_place(staging: Path, target: Path) -> None:
    old: Path | None = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(staging, target)
    except OSError as err:
        if old is not None and not target.exists():
            os.replace(old / target.name, target)  # put the earlier report back
        raise EinspaceError(f"cannot move the report into {str(target)!r}: {err}") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- sections


def _intro(factors: int, d_in: int, d_out: int, data: results.RunData | None) -> list[Block]:
    items = [
        "The space: how many valid einsum families exist, and the exact ν, ω, ψ of each "
        f"family with up to {min(factors, 2)} factor(s)"
        + (", plus a summary of the k = 3 families." if factors == 3 else "."),
        "The taxonomy map: where the families and the named structures sit in (ω, ψ, ν).",
        f"Cost at d_in = {d_in}, d_out = {d_out}: parameters and MACs of every exact "
        "realization, the Pareto front and the top-ranked candidates.",
    ]
    if data is not None:
        items.append(
            "Search results: fitted compute-optimal scaling laws of the proxy runs in "
            f"{data.location}" + (f" (study {data.study!r})." if data.study else ".")
        )
    items.append("How it was made: command, date and versions.")
    return [
        Paragraph(
            "This report describes the space of einsum-structured linear layers "
            "(docs: theory §1–§3) and, when a run store is given, the scaling of the structures "
            "trained in it (docs: theory §6). Every table is also in `tables/` as CSV."
        ),
        Paragraph("Three exponents of the layer width place every structure on the map."),
        Paragraph(
            "ω (parameter sharing) says how often each weight is reused for one input, as a "
            "power of the width. It is zero when every weight is used once, as in dense, "
            "low-rank and BTT layers, and positive when weights are reused, as in a Kronecker "
            "product."
        ),
        Paragraph(
            "ψ (rank) says how the rank of the layer's matrix grows with its width. It is one "
            "for a full-rank layer such as dense, Monarch or BTT, and smaller for a low-rank "
            "layer, which squeezes every input through a narrow bottleneck."
        ),
        Paragraph(
            "ν (compute intensity) says how fast the multiply-accumulates that a layer spends "
            "on one input grow as the layer gets wider. Dense layers have the largest ν of the "
            "usual structures, so Monarch and BTT get ever cheaper than dense as the width grows."
        ),
        Bullets(tuple(items)),
    ]


def _space_section(factors: int) -> list[Block]:
    blocks: list[Block] = [
        Heading("The space"),
        Paragraph(
            "A family is a set of index classes (which tensors share an einsum index). It is "
            "valid when x and y are both reached, every factor is used, no factor is "
            "redundant and the hypergraph is connected. The paper space never puts x and y "
            "in one class; the extended space allows block-diagonal classes that hold both. "
            "Families are counted up to renaming the factors and, in the `mod x↔y` columns, "
            "also up to swapping x and y."
        ),
        Table(
            "family_counts",
            space.family_counts(max_extended_k=3 if factors == 3 else 2),
            "Valid families per number of factors k."
            + (
                ""
                if factors == 3
                else " The k = 3 extended space (5.5 million families) is counted only in "
                "reports with `factors=3`."
            ),
            max_rows=None,
        ),
    ]
    for k in range(1, min(factors, 2) + 1):
        table = space.family_table(k)
        blocks += [
            Heading(f"Families with k = {k}", level=3),
            Table(
                f"families_k{k}",
                table,
                f"All {len(table)} valid paper-space families with {k} factor(s). ν, ω and ψ "
                "are exact piecewise-linear forms of the class exponents (a class alone on "
                "its side has θ = 1); the last columns evaluate them at the balanced point "
                f"θ (each side shared equally, rank classes {space.RANK_EXPONENT:g}).",
                max_rows=None,
            ),
        ]
    if factors == 3:
        full, by_name, by_classes, grid = space.k3_summary()
        blocks += [
            Heading("Families with k = 3 (summary)", level=3),
            Paragraph(
                f"There are {len(full)} valid paper-space families with three factors. Their "
                "exponents at the balanced point were computed for all of them at once "
                "(no symbolic algebra); the full table is only in the CSV."
            ),
            Table("families_k3", full, "Every k = 3 family.", max_rows=0),
            Table(
                "families_k3_by_name",
                by_name,
                "k = 3 families by named match (the named structures of the registry have at "
                "most two factors, so a three-factor family matches one only if a "
                "three-factor structure is registered).",
                max_rows=None,
            ),
            Table(
                "families_k3_by_classes",
                by_classes,
                "k = 3 families by number of classes, with how many are full rank (ψ = 1) "
                "and sharing-free (ω = 0) at the balanced point.",
                max_rows=None,
            ),
            Table(
                "families_k3_omega_psi",
                grid,
                "k = 3 families by ω bin (rows) and ψ bin (columns) at the balanced point.",
                max_rows=None,
            ),
        ]
    return blocks


def _taxonomy_section(factors: int) -> list[Block]:
    points, projections, view_3d = taxonomy.map_figures(min(factors, 2))
    named = points[points["kind"] == "named"][["label", "k", "family", "nu", "omega", "psi"]]
    n_fam = int((points["kind"] == "family").sum())
    return [
        Heading("The taxonomy map"),
        Paragraph(
            f"Each of the {n_fam} families with up to {min(factors, 2)} factor(s) is drawn at "
            "its balanced point, each named structure at its default parameters. ω is the "
            "exponent of MACs per parameter (parameter sharing), ψ the rank exponent (1 = "
            "full rank) and ν the compute intensity (MACs grow as d^(1+ν)). Family markers "
            "are jittered slightly because many families share a point; coinciding named "
            "structures share a label."
        ),
        Figure(
            "taxonomy_projections",
            projections,
            "The taxonomy in three 2-D projections: ω–ψ, ψ–ν and ω–ν.",
            "Scatter plots of families and named structures in the ω–ψ, ψ–ν and ω–ν planes",
        ),
        Figure(
            "taxonomy_3d",
            view_3d,
            "The same points in (ω, ψ, ν).",
            "3-D scatter plot of families and named structures in ω, ψ, ν",
        ),
        Table("named_structures", named, "Named structures at their defaults.", max_rows=None),
        Table("taxonomy_points", points, "Every point of the map.", max_rows=0),
    ]


def _rank_sentence(table: pd.DataFrame) -> str:
    """How the ranks of the cost table are known (proof, SVD, or only the min-cut bound)."""
    counts = table["rank_method"].value_counts()
    proof, svd, bound = (int(counts.get(m, 0)) for m in ("proof", "svd", "bound"))
    text = (
        f"Ranks are those of the matrix each layer computes: {proof} proven (a certified "
        f"lower bound meets the min-cut), {svd} measured by SVD"
    )
    if bound:
        return text + f", and {bound} only bounded by the min-cut (never counted as full rank)."
    return text + "."


def _cost_section(factors: int, d_in: int, d_out: int) -> list[Block]:
    table = cost.realization_table(d_in, d_out, max_k=min(factors, 2))
    ranking = cost.top_candidates(d_in, d_out, max_k=min(factors, 2))
    top = ranking.head(TOP_SHOWN) if isinstance(ranking, pd.DataFrame) else None
    front = table[table["pareto"]].sort_values([cost.MACS, "params"], kind="mergesort")
    front_cols = [
        "k",
        "family",
        "name",
        "sizes",
        "params",
        cost.MACS,
        "rank",
        "rank_method",
        "omega_eff",
        "nu_eff",
    ]
    blocks: list[Block] = [
        Heading(f"Cost at d_in = {d_in}, d_out = {d_out}"),
        Paragraph(
            f"There are {len(table)} exact realizations with up to {min(factors, 2)} "
            f"factor(s) (class sizes whose products are exactly d_in and d_out), "
            f"{int(table['full_rank'].sum())} of them full rank. "
            + _rank_sentence(table)
            + " MACs are per input vector "
            "with the best sequential factor order; parameters are Σ over factors of the "
            "product of their class sizes. Three-factor realizations are not enumerated: "
            "there are more than five million even at d = 64."
        ),
        Figure(
            "cost_params_vs_macs",
            cost.cost_plot(table, top, d_in, d_out),
            "Parameters vs MACs of every exact realization (log-log). Red: the Pareto front "
            "among full-rank rows, where no other full-rank layer has at most the MACs and at "
            "least the parameters."
            + (
                f" Green rings: the top {TOP_SHOWN} by the default score."
                if top is not None
                else ""
            ),
            "Log-log scatter plot of parameters against MACs with the Pareto front highlighted",
        ),
        Table(
            "pareto_front",
            front[front_cols],
            f"The {len(front)} realizations on the full-rank Pareto front, cheapest first. "
            "With ω_eff = 0 a layer has as many parameters as MACs, so the front is the "
            "params = MACs line wherever a realization reaches it.",
            max_rows=25,
        ),
        Table("realizations", table, "Every exact realization.", max_rows=0),
        Heading("Top candidates by the default score", level=3),
    ]
    if isinstance(ranking, str):
        blocks.append(Paragraph(ranking))
    else:
        cols = [c for c in cost.SCORE_COLUMNS if c in ranking.columns]
        blocks += [
            Paragraph(
                "`search.score` with the default objective ranks full-rank layers first, then "
                "smaller effective ω, then more parameters per MAC (the papers' prior: no "
                f"parameter sharing and full rank scale best). Candidates: every exact "
                f"{min(factors, 2)}-factor realization."
            ),
            Table(
                "top_candidates",
                ranking[cols].head(TOP_CSV),
                f"The top of the ranking (the CSV holds the first {TOP_CSV} of {len(ranking)}).",
                max_rows=TOP_SHOWN,
            ),
        ]
    return blocks
