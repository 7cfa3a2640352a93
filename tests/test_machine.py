"""The machine description benchmarks record beside timing figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eqmarl.core.machine import cpu_model, machine_info


def test_cpu_model_is_the_model_name_not_the_architecture() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    if not names:
        pytest.skip("no model name in /proc/cpuinfo on this machine")
    assert cpu_model() == names[0]


def test_machine_info_counts_the_cores_this_process_may_use() -> None:
    info = machine_info()
    assert info["cpu"] == cpu_model()
    if hasattr(os, "sched_getaffinity"):
        assert info["cores"] == len(os.sched_getaffinity(0))
    assert isinstance(info["cores"], int) and info["cores"] >= 1
