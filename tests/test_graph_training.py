"""Graph policies through the real CLI (tiny sizes), the sample-efficiency preset, and the
``eqmarl plot-curves`` grouping/statistics on synthetic runs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from eqmarl.cli import main as eqmarl_main
from eqmarl.eval.plots import find_runs, group_runs, mean_se_curve, steps_to_threshold, threshold_summary, value_at
from tests.conftest import TINY, compose, launch_cmd, run_ok

GRAPH_MODELS = ("gnn", "egnn", "e2gn2")


# ------------------------------------------------------------------------ training
def run_cli(tmp_path: Path, env: dict, *extra: str, name: str = "run") -> Path:
    out = tmp_path / name
    run_ok(launch_cmd(*TINY, f"hydra.run.dir={out}", *extra), env=env, timeout=300)
    return out


def test_graph_models_train_through_the_cli(tmp_path: Path, clean_env: dict) -> None:
    """gnn, egnn and e2gn2 (continuous actions) as one local sweep: one process, three runs."""
    sweep = tmp_path / "sweep"
    run_ok(
        launch_cmd(
            "-m", *TINY, "model=" + ",".join(GRAPH_MODELS), "train.total_env_steps=400", f"hydra.sweep.dir={sweep}"
        ),
        env=clean_env,
        timeout=300,
    )
    runs = {
        json.loads((d / "config.json").read_text())["model"]["name"]: d
        for d in sweep.iterdir()
        if d.is_dir() and (d / "config.json").exists()
    }
    assert set(runs) == set(GRAPH_MODELS)
    for model, out in runs.items():
        assert json.loads((out / "config.json").read_text())["model"]["hidden"] == 16
        rows = list(csv.DictReader((out / "metrics.csv").open()))
        assert [int(r["env_steps"]) for r in rows] == [200, 400], model
        assert all(math.isfinite(float(r["loss"])) for r in rows), model
        assert rows[-1]["eval_return"] != "" and math.isfinite(float(rows[-1]["eval_return"])), model
        assert (out / "checkpoints" / "latest").exists(), model


def test_e2gn2_discrete_actions_and_mappo_through_the_cli(tmp_path: Path, clean_env: dict) -> None:
    out = run_cli(
        tmp_path,
        clean_env,
        "model=e2gn2",
        "env.continuous_actions=false",
        "env.scenario=simple_tag",
        "algo=mappo",
        "train.total_env_steps=200",
        name="tag",
    )
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["loss"]))


@pytest.mark.parametrize("model", GRAPH_MODELS)
def test_graph_model_configs_compose(model: str) -> None:
    cfg = compose([f"model={model}"])
    assert cfg.model.name == model
    assert cfg.model.hidden == 32 and cfg.model.layers >= 1


# ------------------------------------------------------------------- experiment preset
def test_sample_efficiency_preset_composes() -> None:
    cfg = compose(["experiment=mpe_sample_efficiency"])
    assert cfg.experiment == "mpe_sample_efficiency"
    assert cfg.env.name == "mpe" and cfg.env.scenario == "simple_spread"
    # the sweep itself is hydra's: models x seeds x tasks
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.conftest import CONFIGS

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        raw = hcompose("config", overrides=["experiment=mpe_sample_efficiency"], return_hydra_config=True)
    params = raw.hydra.sweeper.params
    assert set(params["model"].split(",")) == {"mlp", "gnn", "egnn", "e2gn2"}
    assert len(params["seed"].split(",")) >= 3
    assert set(params["env.scenario"].split(",")) == {"simple_spread", "simple_tag"}


def test_sample_efficiency_sweep_then_plot_curves(tmp_path: Path, clean_env: dict) -> None:
    """A real (tiny) multirun of the preset, then ``eqmarl plot-curves`` on its directory."""
    sweep = tmp_path / "sweep"
    run_ok(
        launch_cmd(
            "-m",
            "experiment=mpe_sample_efficiency",
            *TINY,
            "train.total_env_steps=200",
            "model=mlp,e2gn2",
            "seed=3",
            "env.scenario=simple_spread",
            f"hydra.sweep.dir={sweep}",
        ),
        env=clean_env,
        timeout=300,
    )
    runs = sorted(d.name for d in sweep.iterdir() if (d / "metrics.csv").exists())
    assert len(runs) == 2 and all("simple_spread" in r for r in runs)
    assert json.loads((sweep / runs[0] / "config.json").read_text())["experiment"] == "mpe_sample_efficiency"
    q = run_ok(
        ["eqmarl", "plot-curves", str(sweep), "--out", str(tmp_path / "c.png"), "--threshold=-1000"],
        env=clean_env,
        timeout=120,
    )
    summary = json.loads(q.stdout.strip().splitlines()[-1])
    models = summary["mpe/simple_spread"]["models"]
    assert set(models) == {"mlp", "e2gn2"}
    assert models["e2gn2"]["seeds"] == [3] and models["e2gn2"]["reached"] == 1


# --------------------------------------------------------------------------- plotting
def write_run(
    root: Path, name: str, model: str, seed: int, curve: list[tuple[int, float]], scenario: str = "simple_spread"
) -> Path:
    """A synthetic run directory: config.json and a metrics.csv with eval every other row."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps({"env": {"name": "mpe", "scenario": scenario}, "model": {"name": model}, "seed": seed})
    )
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "env_steps", "train_return", "eval_return"])
        for i, (steps, value) in enumerate(curve):
            # a training-only row in between: eval_return blank, must be skipped
            w.writerow([2 * i + 1, steps - 50, -200.0, ""])
            w.writerow([2 * i + 2, steps, -200.0, value])
    return run


def test_plot_curves_groups_by_model_and_counts_steps_to_threshold(tmp_path: Path, capfd) -> None:
    sweep = tmp_path / "sweep"
    # model "fast" reaches -100 at 200 and 300 steps; "slow" at 400 and never
    write_run(sweep, "0_fast_s0", "fast", 0, [(100, -130.0), (200, -100.0), (300, -90.0), (400, -85.0)])
    write_run(sweep, "1_fast_s1", "fast", 1, [(100, -140.0), (200, -120.0), (300, -95.0), (400, -90.0)])
    write_run(sweep, "2_slow_s0", "slow", 0, [(100, -140.0), (200, -130.0), (300, -110.0), (400, -99.0)])
    write_run(sweep, "3_slow_s1", "slow", 1, [(100, -150.0), (200, -140.0), (300, -130.0), (400, -120.0)])
    write_run(sweep, "4_tag", "fast", 0, [(100, 5.0), (200, 20.0)], scenario="simple_tag")
    (sweep / "not_a_run").mkdir()
    (sweep / "not_a_run" / "metrics.csv").write_text("env_steps,eval_return\n1,2\n")  # no config.json

    runs = find_runs([sweep])
    assert len(runs) == 5
    groups = group_runs(runs)
    assert set(groups) == {"mpe/simple_spread", "mpe/simple_tag"}
    fast = groups["mpe/simple_spread"]["fast"]
    assert [r.seed for r in fast] == [0, 1] and fast[0].steps == [100, 200, 300, 400]

    grid, mean, se = mean_se_curve(fast)
    assert grid == [100, 200, 300, 400]
    assert mean == pytest.approx([-135.0, -110.0, -92.5, -87.5])
    # two seeds: std (ddof 1) / sqrt(2) = |a - b| / 2
    assert se == pytest.approx([5.0, 10.0, 2.5, 2.5])
    assert steps_to_threshold(grid, mean, -100.0) == 300
    assert steps_to_threshold([1, 2], [0.0, 0.0], 1.0) is None

    summary = threshold_summary(groups, {"simple_spread": -100.0, "*": 10.0})
    spread = summary["mpe/simple_spread"]
    assert spread["threshold"] == -100.0
    assert spread["models"]["fast"]["steps_per_seed"] == [200, 300]
    assert spread["models"]["fast"]["mean_steps"] == 250
    assert spread["models"]["fast"]["reached"] == 2
    assert spread["models"]["slow"]["steps_per_seed"] == [400, None]
    assert spread["models"]["slow"]["reached"] == 1 and spread["models"]["slow"]["mean_steps"] == 400
    assert spread["models"]["slow"]["mean_curve_steps"] is None  # mean at 400: -109.5
    assert spread["models"]["slow"]["final_mean"] == pytest.approx(-109.5)
    at = threshold_summary(groups, {}, [250, 1000])["mpe/simple_spread"]["models"]["fast"]["at"]
    fast_at_250 = [value_at(r, 250) for r in fast]
    assert at["250"]["n"] == 2 and at["250"]["mean"] == pytest.approx(sum(fast_at_250) / 2)
    assert at["250"]["se"] == pytest.approx(abs(fast_at_250[0] - fast_at_250[1]) / 2)
    assert at["1000"] == {"mean": None, "se": None, "n": 0}  # beyond every run
    assert summary["mpe/simple_tag"]["threshold"] == 10.0
    assert summary["mpe/simple_tag"]["models"]["fast"]["steps_per_seed"] == [200]

    # the command: figure + JSON (stdout and file)
    out = tmp_path / "fig" / "curves.png"
    rc = eqmarl_main(
        ["plot-curves", str(sweep), "--out", str(out), "--threshold", "simple_spread=-100", "--threshold=10"]
    )
    assert rc == 0
    assert out.stat().st_size > 5000
    printed = json.loads(capfd.readouterr().out.strip().splitlines()[-1])  # the JSON goes to fd 1
    assert printed == json.loads(out.with_suffix(".json").read_text())
    assert printed["mpe/simple_spread"]["models"]["fast"]["mean_steps"] == 250


def test_mean_curve_interpolates_runs_of_different_grids(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "m", 0, [(100, 0.0), (300, 20.0), (500, 40.0)])
    write_run(tmp_path, "b", "m", 1, [(200, 10.0), (400, 30.0)])
    grid, mean, se = mean_se_curve(group_runs(find_runs([tmp_path]))["mpe/simple_spread"]["m"])
    # common range [200, 400]; run a interpolated at 200 and 400
    assert grid == [200, 300, 400]
    assert mean == pytest.approx([10.0, 20.0, 30.0]) and se == pytest.approx([0.0, 0.0, 0.0])


def test_plot_curves_errors(tmp_path: Path, capsys) -> None:
    assert eqmarl_main(["plot-curves", str(tmp_path)]) == 2
    assert "no runs" in capsys.readouterr().err
    write_run(tmp_path, "a", "m", 0, [(100, 0.0)])
    assert eqmarl_main(["plot-curves", str(tmp_path), "--threshold", "spread=abc"]) == 2
