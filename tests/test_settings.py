"""Tests of the one run configuration: RunSettings and what is derived from it."""

from __future__ import annotations

import dataclasses

import pytest
import typer.main
from typer.testing import CliRunner

from einspace.errors import EinspaceError
from search.proxy import proxy_run
from search.proxy_config import ProxyConfig, compute_per_step, make_config
from search.settings import RunSettings, settings_fields, with_settings

TINY = {"task_kwargs": {"n_eval": 32}, "batch_size": 4}


def test_proxy_config_is_the_settings_plus_the_run() -> None:
    defaults = RunSettings()
    config = ProxyConfig("dense", 16)
    for f in settings_fields():
        assert getattr(config, f.name) == getattr(defaults, f.name), f.name
    own = {f.name for f in dataclasses.fields(ProxyConfig)} - {f.name for f in settings_fields()}
    per_run = {"structure", "width", "seed", "task_digest", "task_repr"}
    assert own == per_run | {"parent", "branch_step", "warmup_steps"}
    assert config.settings() == defaults


def test_settings_config_round_trips_every_field() -> None:
    changed = RunSettings(
        task="digits",
        task_kwargs={"eval_fraction": 0.5},
        steps=7,
        lr=0.01,
        batch_size=3,
        depth=1,
        eval_every=2,
        weight_decay=0.1,
        base_width=32,
        mode="exact",
        pad_tol=0.2,
        n_layer=3,
        d_head=8,
        tied=True,
        model="search.lm:build_gpt",
    )
    assert {f.name for f in settings_fields()} <= set(dataclasses.asdict(changed))
    assert make_config(changed, "dense", 16, seed=2).settings() == changed


def test_every_setting_is_an_option_of_the_search_command() -> None:
    from einspace.cli import app

    command = typer.main.get_command(app).commands["search"]  # type: ignore[attr-defined]
    options = {p.name: p for p in command.params}
    defaults = RunSettings()
    for f in settings_fields():
        assert f.name in options, f.name
        assert options[f.name].help == f.metadata["help"]
    assert options["steps"].default == defaults.steps
    runner = CliRunner()
    bad_mode = runner.invoke(app, ["search", "dense", "--mode", "exactly"])
    assert bad_mode.exit_code == 2 and "exactly" in bad_mode.output
    bad_json = runner.invoke(app, ["search", "dense", "--task-kwargs", "{n_eval: 3}"])
    assert bad_json.exit_code == 2 and "--task-kwargs" in bad_json.output


def test_proxy_run_takes_every_setting_and_refuses_others() -> None:
    with pytest.raises(EinspaceError, match="did you mean 'lr'"):
        proxy_run("dense", width=8, steps=1, lrr=0.1)
    with pytest.raises(EinspaceError, match="did you mean 'lr'"):
        with_settings(lrr=0.1)
    r = proxy_run("dense", width=8, steps=2, eval_every=1, weight_decay=0.5, **TINY)
    assert r.config.weight_decay == 0.5 and r.config.batch_size == 4


@pytest.mark.parametrize("structure", ["dense", "btt", "monarch"])
def test_compute_per_step_is_what_a_run_logs(structure: str) -> None:
    settings = RunSettings(steps=3, eval_every=1, **TINY)  # type: ignore[arg-type]
    r = proxy_run(structure, width=16, settings=settings)
    per_step = compute_per_step(settings, structure, 16)
    assert [p.compute for p in r.points] == [per_step * p.step for p in r.points]
    assert per_step == 6 * r.macs_per_token * settings.batch_size
