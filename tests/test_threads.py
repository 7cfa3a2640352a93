"""train.threads=0 uses every usable core only where OpenMP's idle threads sleep, and only
the cores other processes leave free."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

import eqmarl
from eqmarl.train.threads import AdaptiveThreads
from tests.conftest import ROOT

OPENMP_VARS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")


def _threads_in_a_fresh_process(env: dict[str, str], import_torch_first: bool) -> tuple[int, str]:
    code = (
        ("import torch\n" if import_torch_first else "")
        + "import eqmarl, os\n"
        + "from eqmarl.train.threads import set_threads, usable_cores\n"
        + "print(set_threads(0), usable_cores(), os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    n, cores, policy, spin = p.stdout.split()
    assert int(cores) >= 1
    return int(n), policy + "|" + spin + "|" + p.stderr


def test_eqmarl_sets_passive_waiting_before_torch_and_uses_every_core(clean_env: dict) -> None:
    env = {k: v for k, v in clean_env.items() if k not in OPENMP_VARS}
    n, info = _threads_in_a_fresh_process(env, import_torch_first=False)
    import os

    # passive, after a short spin (a thread sleeping after every small operator is slower than one thread)
    assert info.startswith(f"PASSIVE|{eqmarl.OMP_SPIN_COUNT}|")
    assert n == len(os.sched_getaffinity(0))


def test_torch_loaded_first_without_the_policy_means_one_thread_with_a_note(clean_env: dict) -> None:
    env = {k: v for k, v in clean_env.items() if k not in OPENMP_VARS}
    n, info = _threads_in_a_fresh_process(env, import_torch_first=True)
    assert n == 1 and "OMP_WAIT_POLICY is not PASSIVE" in info


def test_a_users_policy_and_count_win(clean_env: dict) -> None:
    env = {k: v for k, v in clean_env.items() if k not in OPENMP_VARS}
    env["OMP_WAIT_POLICY"] = "active"
    n, info = _threads_in_a_fresh_process(env, import_torch_first=False)
    assert n == 1 and info.startswith("active|None|")  # never overwritten, no spin count added; spinning: one
    env["OMP_WAIT_POLICY"] = "passive"  # a user's own passive policy: no spin count added
    _, info = _threads_in_a_fresh_process(env, import_torch_first=False)
    assert info.startswith("passive|None|")
    del env["OMP_WAIT_POLICY"]
    env["GOMP_SPINCOUNT"] = "500"  # a user's own spin count, no policy: PASSIVE added, the count kept
    _, info = _threads_in_a_fresh_process(env, import_torch_first=False)
    assert info.startswith("PASSIVE|500|")
    del env["GOMP_SPINCOUNT"]
    code = "import eqmarl\nfrom eqmarl.train.threads import set_threads\nprint(set_threads(3))\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert p.stdout.strip() == "3"


ADAPT = """
import os, subprocess, sys, time
import eqmarl, torch
from eqmarl.train.threads import AdaptiveThreads

policy = AdaptiveThreads(0)
cores = len(os.sched_getaffinity(0))
assert policy.adaptive and policy.current == cores == torch.get_num_threads()
policy.start()
phases = []
def phase(spinning):
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(spinning)]
    time.sleep(1.5)
    n = policy.step()
    phases.append((policy.last_others, n, torch.get_num_threads()))
    for s in spinners:
        s.kill()
        s.wait()
phase(0)
phase(cores - 1)
phase(0)
print(phases)
"""


def test_threads_0_trains_on_the_cores_other_processes_leave_free(clean_env: dict) -> None:
    import math
    import os

    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("one usable core: nothing to adapt")
    env = {k: v for k, v in clean_env.items() if k not in OPENMP_VARS}
    p = subprocess.run([sys.executable, "-c", ADAPT], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    before, busy, after = ast.literal_eval(p.stdout.strip())

    def expected(others: float) -> int:
        return min(cores, max(1, cores - math.floor(others + AdaptiveThreads.ROUND_UP)))

    # every decision: the cores the rest of the machine left free during the phase (at least one)
    for others, n, in_torch in (before, busy, after):
        assert n == in_torch == expected(others)
    if before[0] >= 0.5 or after[0] >= 0.5:
        pytest.skip(f"other processes already used {before[0]:.1f} cores: the spinners' share cannot be told apart")
    # on an otherwise idle machine: cores - 1 spinning processes are seen as such and leave one
    # thread; before and after them, every core
    assert busy[0] > cores - 1.4 and busy[1] == 1
    assert before[1] == after[1] == cores
