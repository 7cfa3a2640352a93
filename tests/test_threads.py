"""train.threads=0 uses every usable core only where OpenMP's idle threads sleep."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def _threads_in_a_fresh_process(env: dict[str, str], import_torch_first: bool) -> tuple[int, str]:
    code = (
        ("import torch\n" if import_torch_first else "")
        + "import eqmarl, os\n"
        + "from eqmarl.train.threads import set_threads, usable_cores\n"
        + "print(set_threads(0), usable_cores(), os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    n, cores, policy = p.stdout.split()
    assert int(cores) >= 1
    return int(n), policy + "|" + p.stderr


def test_eqmarl_sets_passive_waiting_before_torch_and_uses_every_core(clean_env: dict) -> None:
    env = {k: v for k, v in clean_env.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    n, info = _threads_in_a_fresh_process(env, import_torch_first=False)
    import os

    assert info.startswith("PASSIVE|")
    assert n == len(os.sched_getaffinity(0))


def test_torch_loaded_first_without_the_policy_means_one_thread_with_a_note(clean_env: dict) -> None:
    env = {k: v for k, v in clean_env.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    n, info = _threads_in_a_fresh_process(env, import_torch_first=True)
    assert n == 1 and "OMP_WAIT_POLICY is not PASSIVE" in info


def test_a_users_policy_and_count_win(clean_env: dict) -> None:
    env = {k: v for k, v in clean_env.items() if k != "OMP_NUM_THREADS"}
    env["OMP_WAIT_POLICY"] = "active"
    n, info = _threads_in_a_fresh_process(env, import_torch_first=False)
    assert n == 1 and info.startswith("active|")  # never overwritten; spinning threads: one
    code = "import eqmarl\nfrom eqmarl.train.threads import set_threads\nprint(set_threads(3))\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert p.stdout.strip() == "3"
