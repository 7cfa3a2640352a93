"""benchmarks/smax_vs_jaxmarl.py: the equal-wall-time summary reads both sides' rows alike."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, load_benchmark


def _rows(step_s: float, steps_per_update: int, n: int, rate) -> list[dict]:
    return [
        {"env_steps": (i + 1) * steps_per_update, "wall_s": (i + 1) * step_s, "win_rate": rate(i), "return": 0.0}
        for i in range(n)
    ]


def test_window_means_per_mark_and_seed_means(tmp_path: Path) -> None:
    mod = load_benchmark("smax_vs_jaxmarl")
    # eqmarl: an update every 2 s of 2,000 steps, win rate = its index / 1000; one nan (no episode ended)
    for seed, offset in ((0, 0.0), (1, 0.1)):
        rows = _rows(2.0, 2000, 320, lambda i, o=offset: math.nan if i == 89 else i / 1000 + o)
        doc = {"side": "eqmarl", "model": "e2gn2", "seed": seed, "rows": rows}
        (tmp_path / f"eqmarl_e2gn2_s{seed}.json").write_text(json.dumps(doc))
    # JaxMARL: an update every 7 s of 16,384 steps, constant .5, stopped before 10 minutes
    jrows = _rows(7.0, 16384, 80, lambda i: 0.5)
    (tmp_path / "jaxmarl_mappo_s0.json").write_text(json.dumps({"side": "jaxmarl", "seed": 0, "rows": jrows}))

    res = mod.summary(tmp_path)
    e = res["sides"]["eqmarl_e2gn2"]
    # 3 minutes = 180 s: the updates ending in (150, 180] are i = 75..89, 89 is nan -> mean of 75..88
    assert e["seeds"]["0"]["at_minutes"]["3"] == round(sum(range(75, 89)) / 14 / 1000, 4)
    assert e["seeds"]["1"]["at_minutes"]["3"] == round(sum(range(75, 89)) / 14 / 1000 + 0.1, 4)
    both = (e["seeds"]["0"]["at_minutes"]["3"], e["seeds"]["1"]["at_minutes"]["3"])
    assert e["mean_at_minutes"]["3"]["mean"] == round(sum(both) / 2, 4)
    # 100k env steps: updates ending in (80k, 100k] = i 40..49
    assert e["seeds"]["0"]["at_env_steps"]["100000"] == round(sum(range(40, 50)) / 10 / 1000, 4)
    # 10 minutes: updates ending in (570, 600] = i 285..299 (the run ends at 640 s)
    assert e["seeds"]["0"]["at_minutes"]["10"] == round(sum(range(285, 300)) / 15 / 1000, 4)
    # a mark after the run's end is None, and so is the seeds' mean
    j = res["sides"]["jaxmarl_mappo"]
    assert j["seeds"]["0"]["at_minutes"]["5"] == 0.5
    assert j["seeds"]["0"]["at_minutes"]["10"] is None  # 80 x 7 s = 560 s < 600 s
    assert j["mean_at_minutes"]["10"] == {"mean": None, "n": 0}
    assert json.loads((tmp_path / "summary.json").read_text()) == res
    # curves.png: every seed thin and the seeds' mean where both seeds have a value
    assert mod.plot(tmp_path).stat().st_size > 10_000


def test_a_jaxmarl_script_that_cannot_import_is_refused_before_any_run(tmp_path: Path) -> None:
    """distrax (not in the smax extra) missing used to stop the queue after the eqmarl side."""
    script = tmp_path / "mappo_rnn_smax.py"
    script.write_text(
        "import json\nimport not_installed_mod_xyz.sub as a\nfrom other_missing_pkg_q import b\n"
        "from . import rel\n\n\ndef f():\n    import lazy_missing_mod_k\n"
    )
    mod = load_benchmark("jaxmarl_mappo_smax")
    assert mod.missing_imports(script) == ["lazy_missing_mod_k", "not_installed_mod_xyz", "other_missing_pkg_q"]
    for bad, expect in (
        (script, "pip install lazy_missing_mod_k not_installed_mod_xyz"),
        (tmp_path / "nope.py", "no such file"),
    ):
        out = tmp_path / "out"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "smax_vs_jaxmarl.py"), "run", "--out", str(out)]
        cmd += ["--script", str(bad), "--seeds", "0"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert p.returncode != 0 and expect in p.stderr, p.stderr
        assert not out.exists()  # refused before the eqmarl side ran
