"""Tests of analysis.report: numbers against the API, figures, self-containment, bad input."""

from __future__ import annotations

import base64
import io
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.report import cost, space
from analysis.report import report as build_report
from analysis.scaling import fit_table
from einspace import (
    Structure,
    enumerate_families,
    enumerate_realizations,
    realize_sizes,
)
from einspace.enumeration import count_families
from einspace.errors import EinspaceError

D_IN, D_OUT = 64, 32
SWEEP = "demo"
# (b, m) of the synthetic laws L = b C^-m + floor(width); btt is best, low rank worst
LAWS = {"dense": (30.0, 0.10), "btt": (28.0, 0.105), "low_rank": (40.0, 0.08)}
WIDTHS = (32, 64, 128)


# --------------------------------------------------------------------------- fixtures


def make_store(path: Path) -> Path:
    """A run store with power-law curves for dense, btt and low rank, and one diverged run."""
    from search.store import RunStore

    with RunStore(path) as store:
        for structure, (b, m) in LAWS.items():
            for width in WIDTHS:
                config = {"structure": structure, "width": width, "seed": 0, "task": "toy"}
                claim = store.claim(config, sweep=SWEEP)
                assert claim is not None
                compute = np.geomspace(1e6, 1e9, 10) * width / 32
                loss = b * compute**-m + 16.0 / width
                rows = [{"step": 0, "compute": 0.0, "train_loss": 5.0}]
                rows += [
                    {"step": i + 1, "compute": float(c), "train_loss": float(v)}
                    for i, (c, v) in enumerate(zip(compute, loss, strict=True))
                ]
                store.log_points(claim.run_id, rows)
                store.finish(claim.run_id)
        config = {"structure": "btt", "width": 256, "seed": 0, "task": "toy", "lr": 1.0}
        claim = store.claim(config, sweep=SWEEP)
        assert claim is not None
        store.log_points(
            claim.run_id,
            [{"step": i, "compute": 1e6 * (i + 1), "train_loss": 0.1} for i in range(3)],
        )
        store.mark_diverged(claim.run_id, 3, "loss became nan")
        store.register({"structure": "dense", "width": 16, "task": "toy"}, sweep="other")
    return path


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report without a run store, at a rectangular width."""
    out = tmp_path_factory.mktemp("plain") / "report"
    index = build_report(out, factors=2, d_in=D_IN, d_out=D_OUT, command="einspace report")
    assert index == out / "index.html"
    return out


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "runs.sqlite")


@pytest.fixture(scope="module")
def with_runs(tmp_path_factory: pytest.TempPathFactory, store_path: Path) -> Path:
    """A report with the results section (factors=1 and a small width keep it quick)."""
    out = tmp_path_factory.mktemp("runs") / "report"
    build_report(out, factors=1, d_in=16, d_out=16, runs=store_path, study=SWEEP)
    return out


def csv(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / "tables" / f"{name}.csv", keep_default_na=False, na_values=[""])


def embedded_pngs(html: str) -> list[bytes]:
    found = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return [base64.b64decode(s) for s in found]


def pixel_std(png: bytes) -> float:
    from matplotlib import image

    pixels = image.imread(io.BytesIO(png), format="png")
    return float(np.asarray(pixels, dtype=float).std())


# --------------------------------------------------------------------------- layout


def test_report_writes_html_markdown_images_and_tables(plain: Path) -> None:
    assert (plain / "index.html").stat().st_size > 0
    assert (plain / "report.md").stat().st_size > 0
    assert (plain / ".einspace-report").exists()
    images = sorted(p.name for p in (plain / "img").iterdir())
    assert images == ["cost_params_vs_macs.png", "taxonomy_3d.png", "taxonomy_projections.png"]
    tables = {p.stem for p in (plain / "tables").iterdir()}
    assert {
        "family_counts",
        "families_k1",
        "families_k2",
        "realizations",
        "pareto_front",
        "top_candidates",
        "named_structures",
        "provenance",
    } <= tables
    assert not [p for p in plain.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_markdown_and_html_link_the_same_tables(plain: Path) -> None:
    html = (plain / "index.html").read_text()
    md = (plain / "report.md").read_text()
    for table in (plain / "tables").iterdir():
        link = f"tables/{table.name}"
        assert link in html and link in md, table.name
    for image in re.findall(r"\]\((img/[^)]+)\)", md):
        assert (plain / image).exists()
    for title in (
        "The space",
        "The taxonomy map",
        "Cost at d_in = 64, d_out = 32",
        "How it was made",
    ):
        assert title in html and title in md
    assert "Search results" not in md


def test_html_is_self_contained(plain: Path, with_runs: Path) -> None:
    for folder in (plain, with_runs):
        html = (folder / "index.html").read_text()
        assert "http://" not in html and "https://" not in html
        sources = re.findall(r"\bsrc\s*=\s*[\"']?([^\"' >]*)", html)
        assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
        lowered = html.lower()
        for forbidden in ("<script", "<link", "@import", "url(", "<iframe", "<object"):
            assert forbidden not in lowered, forbidden
        hrefs = re.findall(r'href="([^"]*)"', html)
        assert all(h.startswith("#") or h.startswith("tables/") for h in hrefs)


def test_every_figure_decodes_and_is_not_blank(plain: Path, with_runs: Path) -> None:
    for folder, expected in ((plain, 3), (with_runs, 5)):
        html = (folder / "index.html").read_text()
        pngs = embedded_pngs(html)
        assert len(pngs) == expected
        on_disk = {p.read_bytes() for p in (folder / "img").iterdir()}
        assert set(pngs) == on_disk
        for png in pngs:
            assert 20_000 < len(png) < 400_000  # modest size at dpi 100
            assert pixel_std(png) > 0.01


def test_analysis_report_is_the_function_even_after_submodule_imports() -> None:
    import analysis.report.build

    assert callable(analysis.report)
    assert analysis.report is build_report


# --------------------------------------------------------------------------- numbers


def test_family_counts_match_the_enumerator(plain: Path) -> None:
    counts = csv(plain, "family_counts").set_index("k")
    for k in (1, 2, 3):
        assert int(counts.at[k, "paper"]) == len(enumerate_families(k))
        assert int(counts.at[k, "paper, mod x↔y"]) == count_families(k, False, True)
    for k in (1, 2):
        assert int(counts.at[k, "extended"]) == len(enumerate_families(k, diagonal=True))
        assert int(counts.at[k, "extended, mod x↔y"]) == count_families(k, True, True)
    assert counts.at[3, "extended"] == "not computed"
    assert [int(counts.at[k, "paper"]) for k in (1, 2, 3)] == [1, 39, 40378]


def test_family_table_rows_match_the_api(plain: Path) -> None:
    table = csv(plain, "families_k2")
    fams = enumerate_families(2)
    assert table["family"].tolist() == [str(f) for f in fams]
    for row, fam in zip(table.itertuples(), fams, strict=True):
        assert row.greek == fam.greek
        assert (None if pd.isna(row.named) else row.named) == fam.name
        s = Structure.balanced(fam)
        assert (row.nu_at_theta, row.omega_at_theta, row.psi_at_theta) == pytest.approx(
            (s.nu, s.omega, s.psi), abs=1e-9
        )
    for i in (4, 16, len(fams) - 1):  # a sample: sympy takes ~0.1 s per family
        sym = fams[i].symbolic()
        assert (table.at[i, "nu"], table.at[i, "omega"], table.at[i, "psi"]) == (
            str(sym["nu"]),
            str(sym["omega"]),
            str(sym["psi"]),
        )
    named = set(table["named"].dropna())
    assert named == {"low_rank", "kronecker", "tt", "monarch", "btt"}


def test_named_structures_table_matches_structure(plain: Path) -> None:
    table = csv(plain, "named_structures")
    for row in table.itertuples():
        s = Structure.parse(row.label)
        assert (row.nu, row.omega, row.psi) == pytest.approx((s.nu, s.omega, s.psi))
        assert row.family == str(s.family)


def _sizes(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (pair.split("=") for pair in text.split())}


def test_realization_csv_rows_recompute(plain: Path) -> None:
    table = csv(plain, "realizations")
    expected = len(enumerate_realizations(D_IN, D_OUT, k=1)) + len(
        enumerate_realizations(D_IN, D_OUT, k=2)
    )
    assert len(table) == expected
    sample = table.sample(30, random_state=0)
    for row in sample.itertuples():
        r = realize_sizes(row.family, _sizes(row.sizes), D_IN, D_OUT)
        assert r.params == row.params
        assert r.macs("sequential") == row.macs_sequential
        assert r.rank_bound == row.rank_bound
        assert r.rank == row.rank
        assert bool(row.full_rank) == r.full_rank == (r.rank == min(D_IN, D_OUT))
    dense = table[table["name"] == "dense"]
    assert dense[["params", "macs_sequential"]].values.tolist() == [[D_IN * D_OUT] * 2]


def test_pareto_front_is_the_undominated_full_rank_set(plain: Path) -> None:
    table = csv(plain, "realizations")
    full = table[table["full_rank"]]
    macs, params = full["macs_sequential"].to_numpy(), full["params"].to_numpy()
    dominated = [
        bool(((macs <= m) & (params >= p) & ((macs < m) | (params > p))).any())
        for m, p in zip(macs, params, strict=True)
    ]
    assert full["pareto"].tolist() == [not d for d in dominated]
    assert not table.loc[~table["full_rank"], "pareto"].any()
    front = csv(plain, "pareto_front")
    assert len(front) == int(table["pareto"].sum())


def test_pareto_mask_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.integers(1, 6, 30)
        p = rng.integers(1, 6, 30)
        brute = [
            not ((m <= a) & (p >= b) & ((m < a) | (p > b))).any() for a, b in zip(m, p, strict=True)
        ]
        assert cost.pareto_mask(m, p).tolist() == brute


def test_top_candidates_are_the_scores_ranking(plain: Path) -> None:
    from search import score

    shown = csv(plain, "top_candidates")
    ranking = score("all", D_IN, D_OUT)
    assert len(shown) == min(len(ranking), 1000)
    assert shown["candidate"].head(15).tolist() == ranking["candidate"].head(15).tolist()
    assert shown["position"].tolist() == list(range(1, len(shown) + 1))


def test_provenance_records_command_and_versions(plain: Path) -> None:
    prov = csv(plain, "provenance").set_index("item")["value"]
    assert prov["command"] == "einspace report"
    assert prov["version: python"] == ".".join(map(str, sys.version_info[:3]))
    assert prov["version: numpy"] == np.__version__
    assert prov["run store"].startswith("none")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", prov["date"])


def test_factors_3_adds_the_k3_summary_without_dumping_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # counting the 5.5 M extended k = 3 families takes ~20 s; stand in for that call only
    real = space.count_families

    def fake(k: int, diagonal: bool = False, modulo_transpose: bool = False) -> int:
        if k == 3 and diagonal:
            return 2768476 if modulo_transpose else 5483962
        return real(k, diagonal, modulo_transpose)

    monkeypatch.setattr(space, "count_families", fake)
    out = tmp_path / "k3"
    build_report(out, factors=3, d_in=16, d_out=16)
    full = csv(out, "families_k3")
    fams = enumerate_families(3)
    assert full["family"].tolist() == [str(f) for f in fams]
    for i in np.random.default_rng(1).choice(len(fams), 40, replace=False):
        theta = fams[i].balanced_theta(space.RANK_EXPONENT)
        assert theta is not None
        forms = fams[i].forms
        expected = (forms.nu(theta), forms.omega(theta), forms.psi(theta))
        assert tuple(full.loc[i, ["nu", "omega", "psi"]]) == pytest.approx(expected, abs=1e-9)
    for name in ("families_k3_by_name", "families_k3_by_classes"):
        assert int(csv(out, name)["families"].sum()) == len(fams)
    grid = csv(out, "families_k3_omega_psi")
    assert int(grid.drop(columns="omega").to_numpy().sum()) == len(fams)
    html = (out / "index.html").read_text()
    assert 'id="table-families_k3"' not in html  # only linked
    assert "tables/families_k3.csv" in html
    assert 'id="table-families_k3_omega_psi"' in html
    counts = csv(out, "family_counts").set_index("k")
    assert int(counts.at[3, "extended"]) == 5483962


def test_prime_width(tmp_path: Path) -> None:
    out = tmp_path / "prime"
    build_report(out, factors=1, d_in=13, d_out=13)
    table = csv(out, "realizations")
    assert table[["name", "sizes", "params"]].values.tolist() == [["dense", "xA=13 Ay=13", 169]]
    assert csv(out, "top_candidates")["name"].tolist() == ["dense"]
    assert csv(out, "families_k1")["named"].tolist() == ["dense"]
    with pytest.raises(EinspaceError, match="no exact realization"):
        build_report(tmp_path / "one", factors=2, d_in=1, d_out=1)
    assert not (tmp_path / "one").exists()


# --------------------------------------------------------------------------- results


def test_results_section_fits_match_fit_table(with_runs: Path, store_path: Path) -> None:
    from search.store import RunStore

    with RunStore(store_path) as store:
        points = store.points(sweep=SWEEP)
    ok = points[points["status"] == "finished"].rename(columns={"train_loss": "loss"})
    expected = fit_table(ok, group="structure", dense="dense").set_index("structure")
    laws = csv(with_runs, "scaling_laws").set_index("structure")
    assert sorted(laws.index) == sorted(LAWS)
    for label in LAWS:
        assert laws.at[label, "m"] == pytest.approx(expected.at[label, "m"], rel=1e-9)
        assert laws.at[label, "m_se"] == pytest.approx(expected.at[label, "m_se"], rel=1e-6)
        assert laws.at[label, "a"] == pytest.approx(expected.at[label, "a"], rel=1e-9)
        s = Structure.parse(label)
        assert (laws.at[label, "omega"], laws.at[label, "psi"], laws.at[label, "nu"]) == (
            pytest.approx((s.omega, s.psi, s.nu))
        )
        assert laws.at[label, "runs"] == len(WIDTHS)
    verdicts = csv(with_runs, "verdicts").set_index("structure")
    mult = verdicts["multiplier"]
    assert mult["dense"] == pytest.approx(1.0)
    assert mult["btt"] == pytest.approx(expected.at["btt", "multiplier"], rel=1e-9)
    assert mult["btt"] > 1 > mult["low_rank"]
    assert verdicts.at["btt", "verdict"] == expected.at["btt", "verdict"]
    assert verdicts.at["dense", "verdict"] == "baseline"


def test_results_section_lists_diverged_runs_and_statuses(with_runs: Path) -> None:
    problems = csv(with_runs, "problem_runs")
    assert problems["status"].tolist() == ["diverged"]
    assert problems["structure"].tolist() == ["btt"]
    assert "loss became nan" in problems["error"].iloc[0]
    status = csv(with_runs, "run_status").set_index("structure")
    assert int(status.at["btt", "diverged"]) == 1
    assert int(status.at["btt", "finished"]) == len(WIDTHS)
    assert "other" not in set(status.index)  # only the chosen study
    prov = csv(with_runs, "provenance").set_index("item")["value"]
    assert prov["run store"].endswith("runs.sqlite") and prov["study"] == SWEEP


def test_exponent_relation_against_slope(with_runs: Path) -> None:
    laws = csv(with_runs, "exponent_vs_structure")
    relation = csv(with_runs, "exponent_relation").set_index("quantity")
    psi, m = laws["psi"].to_numpy(float), laws["m"].to_numpy(float)
    slope = np.polyfit(psi, m, 1)[0]
    assert relation.at["ψ", "slope"] == pytest.approx(slope)
    assert "the predicted sign" in relation.at["ψ", "verdict"]
    assert relation.at["ψ", "n"] == len(LAWS)
    assert math.isnan(relation.at["ω", "slope"])  # all three structures have ω = 0
    assert relation.at["ω", "verdict"].startswith("not testable")


def test_whole_store_without_study(tmp_path: Path, store_path: Path) -> None:
    out = tmp_path / "all"
    build_report(out, factors=1, d_in=8, d_out=8, runs=str(store_path))
    status = csv(out, "run_status").set_index("structure")
    assert int(status.at["dense", "total"]) == len(WIDTHS) + 1  # the pending 'other' run


def test_store_without_points_or_parsable_labels(tmp_path: Path) -> None:
    from search.store import RunStore

    path = tmp_path / "pending.sqlite"
    with RunStore(path) as store:
        store.register({"structure": "dense", "width": 8}, sweep="s")
        rid = store.claim({"structure": "mystery", "width": 8}, sweep="s")
        assert rid is not None
        store.log_points(
            rid.run_id,
            [
                {"step": 1, "compute": 1e3, "train_loss": 1.0},
                {"step": 2, "compute": 2e3, "train_loss": 0.9},
            ],
        )
        store.finish(rid.run_id)
    out = tmp_path / "r"
    build_report(out, factors=1, d_in=8, d_out=8, runs=path)
    laws = csv(out, "scaling_laws")
    assert laws["structure"].tolist() == ["mystery"]
    assert "label not parsed" in laws["note"].iloc[0]
    relation = csv(out, "exponent_relation")
    assert relation["verdict"].str.startswith("not testable").all()


def test_search_section_on_finished_schedules_draws_frontiers_and_verdicts() -> None:
    """Points as the new protocol logs them (params, tokens, final, cooldown branches), from
    known laws: the section draws the frontier and isoFLOP figures per task and its verdict
    table calls BTT-like ahead and low-rank-like behind (their true multipliers at the
    read-off losses are about 1.6× and 0.48×, see docs/fits.md)."""
    from analysis.report.document import Figure, Table
    from analysis.report.results import RunData
    from analysis.report.search_section import search_section
    from analysis.synthetic import chinchilla_points

    pts = chinchilla_points(seeds=2, random_state=4)
    last = pts.groupby("run_id").tail(1)
    runs = last.assign(last_step=last["step"], error="")[
        ["run_id", "status", "structure", "task", "width", "seed", "last_step", "error"]
    ]
    data = RunData(runs.reset_index(drop=True), pts, "eval_loss", "synthetic", None)
    blocks = search_section(data)
    figures = {b.name: b.png for b in blocks if isinstance(b, Figure)}
    assert {"frontier-synthetic", "isoflop-synthetic"} <= set(figures)
    assert all(pixel_std(png) > 0.01 for png in figures.values())
    tables = {b.name: b.frame for b in blocks if isinstance(b, Table)}
    verdicts = tables["verdicts"].set_index("structure")
    assert verdicts.at["btt", "verdict"] == "ahead of dense"
    assert verdicts.at["low_rank", "verdict"] == "behind dense"
    assert verdicts.at["btt", "multiplier (90 % interval)"].endswith("ahead of dense")
    by_width = tables["finished_runs"]
    assert by_width["finished"].tolist() == [10] * 12  # 2 seeds × 5 horizons per width
    laws = tables["scaling_laws"].set_index("structure")
    assert (laws["law"] == "parametric").all() and laws["n_finished"].tolist() == [40] * 3


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("factors", [0, 4, 2.0, True, "2", None])
def test_bad_factors(tmp_path: Path, factors: object) -> None:
    with pytest.raises(EinspaceError, match=r"factors = .*1, 2 or 3"):
        build_report(tmp_path / "r", factors=factors)  # type: ignore[arg-type]
    assert not (tmp_path / "r").exists()


def test_bad_widths(tmp_path: Path) -> None:
    with pytest.raises(EinspaceError, match="d_in"):
        build_report(tmp_path / "r", d_in=0)
    with pytest.raises(EinspaceError, match="d_out"):
        build_report(tmp_path / "r", d_out=-3)


def test_missing_run_store_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "runs.sqlite"
    with pytest.raises(EinspaceError, match="does not exist"):
        build_report(tmp_path / "r", runs=missing)
    assert not missing.exists() and not missing.parent.exists()
    with pytest.raises(EinspaceError, match="does not exist"):
        build_report(tmp_path / "r", runs=f"sqlite:///{missing}")
    assert not missing.exists()
    assert not (tmp_path / "r").exists()


def test_empty_or_foreign_run_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(EinspaceError, match="empty file"):
        build_report(tmp_path / "r", runs=empty)
    assert empty.stat().st_size == 0
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    with pytest.raises(EinspaceError, match="not an SQLite database"):
        build_report(tmp_path / "r", runs=text)


def test_run_store_without_runs(tmp_path: Path) -> None:
    from search.store import RunStore

    path = tmp_path / "fresh.sqlite"
    RunStore(path).close()
    with pytest.raises(EinspaceError, match="holds no runs"):
        build_report(tmp_path / "r", runs=path)


def test_unknown_study_lists_the_studies(tmp_path: Path, store_path: Path) -> None:
    with pytest.raises(EinspaceError, match=r"study 'dmeo' is not in .*'demo', 'other'"):
        build_report(tmp_path / "r", runs=store_path, study="dmeo")
    with pytest.raises(EinspaceError, match="without a run store"):
        build_report(tmp_path / "r", study="demo")


def test_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "report"
    blocker.write_text("keep me")
    with pytest.raises(EinspaceError, match="a file is in the way"):
        build_report(blocker)
    with pytest.raises(EinspaceError, match="cannot create a folder"):
        build_report(blocker / "sub")
    assert blocker.read_text() == "keep me"


def test_folder_of_other_files_is_not_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(EinspaceError, match="not an einspace report"):
        build_report(folder)
    assert (folder / "thesis.tex").read_text() == "precious"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_read_only_parent(tmp_path: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        target = Path("/proc/einspace-report")  # not writable even by root
        if not Path("/proc").is_dir():
            pytest.skip("running as root without /proc: permissions cannot be tested")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o555)
        target = parent / "report"
    try:
        with pytest.raises(EinspaceError, match="cannot create a folder"):
            build_report(target)
    finally:
        if target.parent != Path("/proc"):
            target.parent.chmod(0o755)
    assert not target.exists()


def test_failure_leaves_no_partial_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("plot failed")

    monkeypatch.setattr(cost, "cost_plot", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        build_report(tmp_path / "r", factors=1, d_in=8, d_out=8)
    assert list(tmp_path.iterdir()) == []


def test_rebuild_replaces_an_earlier_report(tmp_path: Path) -> None:
    out = tmp_path / "r"
    build_report(out, factors=1, d_in=8, d_out=8)
    (out / "stale.txt").write_text("from an older version")
    build_report(out, factors=1, d_in=4, d_out=4)
    assert not (out / "stale.txt").exists()
    assert "d_in = 4" in (out / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


# --------------------------------------------------------------------------- browser


_CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var out = [];
  document.querySelectorAll("img").forEach(function (img) {
    var colours = -1;
    try {
      var c = document.createElement("canvas");
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      var ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0);
      var d = ctx.getImageData(0, 0, c.width, c.height).data, seen = {};
      colours = 0;
      for (var i = 0; i < d.length && colours < 50; i += 4 * 97) {
        var key = d[i] + "," + d[i + 1] + "," + d[i + 2];
        if (!seen[key]) { seen[key] = 1; colours++; }
      }
    } catch (e) { colours = -2; }
    out.push(img.naturalWidth + "x" + img.naturalHeight + "x" + colours);
  });
  var p = document.createElement("pre"); p.id = "img-check";
  p.textContent = out.join(";"); document.body.appendChild(p);
});
</script>"""


@pytest.fixture
def chromium() -> Iterator[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (make test installs it with apt when it can)")
    yield exe


def test_browser_renders_every_image(chromium: str, with_runs: Path, tmp_path: Path) -> None:
    html = (with_runs / "index.html").read_text()
    page = tmp_path / "check.html"
    page.write_text(html.replace("</body>", _CHECK_SCRIPT + "</body>"))
    profile = tmp_path / "profile"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--dump-dom",
    ]
    done = subprocess.run(
        [chromium, *flags, page.as_uri()], capture_output=True, text=True, timeout=120
    )
    found = re.search(r'<pre id="img-check">([^<]*)</pre>', done.stdout)
    assert found, f"chromium printed no check result; stderr: {done.stderr[-2000:]}"
    images = found.group(1).split(";")
    assert len(images) == len(embedded_pngs(html)) == 5
    for entry in images:
        width, height, colours = (int(v) for v in entry.split("x"))
        assert width > 0 and height > 0, entry
        assert colours > 1, f"blank image: {entry}"
