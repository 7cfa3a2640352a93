"""benchmarks/smax_generalization.py: the table over seeds, races and merged earlier outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import load_benchmark


def _row(run: str, model: str, seed: int, race: str, wins: dict[str, float]) -> dict:
    group = model if race == "terran" else f"{model}_{race}"
    cells = {c: {"win_rate": w, "win_rate_se": 0.01, "return_mean": 1.0, "episodes": 300} for c, w in wins.items()}
    return {"run": run, "model": model, "group": group, "seed": seed, "race": race, "cells": cells}


def test_table_means_seeds_per_race_with_that_races_paper_numbers() -> None:
    mod = load_benchmark("smax_generalization")
    rows = [
        _row("a", "e2gn2", 0, "zerg", {"left": 0.5, "right": 0.4, "8v8": 0.2}),
        _row("b", "e2gn2", 1, "zerg", {"left": 0.7, "right": 0.8}),  # no 8v8: the cell is left out
        _row("c", "e2gn2", 0, "terran", {"left": 0.9, "right": 0.9}),
    ]
    table = mod.table_of(rows)
    assert set(table) == {"e2gn2_zerg", "e2gn2"}
    zerg = table["e2gn2_zerg"]
    assert set(zerg) == {"left", "right"}
    assert zerg["left"]["mean"] == pytest.approx(0.6)
    assert zerg["left"]["se"] == pytest.approx(math.sqrt(0.02 / 2))  # sample variance .02 over 2 seeds
    assert zerg["right"]["ratio_to_5v5"] == pytest.approx(0.6 / 0.6)
    assert zerg["left"]["paper"] == mod.PAPER["zerg"]["e2gn2"]["left"] != mod.PAPER["terran"]["e2gn2"]["left"]
    assert table["e2gn2"]["left"]["paper"] == mod.PAPER["terran"]["e2gn2"]["left"]
    assert table["e2gn2"]["left"]["se"] is None  # one seed


def test_two_runs_of_one_group_and_seed_are_refused() -> None:
    mod = load_benchmark("smax_generalization")
    rows = [_row("a", "gnn", 0, "terran", {"left": 0.5}), _row("b", "gnn", 0, "terran", {"left": 0.6})]
    with pytest.raises(SystemExit, match="two runs of gnn seed 0"):
        mod.table_of(rows)


def test_merge_takes_earlier_rows_unless_evaluated_again_and_checks_episodes(tmp_path: Path) -> None:
    mod = load_benchmark("smax_generalization")
    earlier = tmp_path / "earlier.json"
    old_row = _row("runs/x", "gnn", 0, "terran", {"left": 0.5})
    del old_row["race"]  # outputs from before races were recorded
    again = _row("runs/y", "gnn", 1, "terran", {})
    earlier.write_text(json.dumps({"episodes_per_cell": 300, "runs": [old_row, again]}))
    rows = mod.merged_rows([str(earlier)], 300, 12345, skip={"runs/y"})
    assert [r["run"] for r in rows] == ["runs/x"]
    assert rows[0]["race"] == "terran" and rows[0]["merged_from"] == str(earlier)
    with pytest.raises(SystemExit, match="--episodes 300 --seed 12345; this table uses --episodes 500"):
        mod.merged_rows([str(earlier)], 500, 12345, skip=set())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"table": {}}))
    with pytest.raises(SystemExit, match=r"not an output of smax_generalization\.py"):
        mod.merged_rows([str(other)], 300, 12345, skip=set())
