#!/usr/bin/env python
"""Image size and start-up: how big the CPU image is, and how long from ``docker run`` to training.

    python benchmarks/image_startup.py [--image eqmarl:cpu] [--ch-image DIR] [--repeats 3] [--out FILE.json]

Measures, on this machine:

- unpacked size (``docker image inspect``) and compressed size (``docker save | gzip``,
  close to what a registry stores and a pull downloads);
- seconds from ``docker run`` to the first training iteration (the first row of the
  run's ``metrics.csv``, polled from the host) on a tiny MPE config, and to the end of
  ``eqmarl doctor --json``; the same with ``ch-run`` when ``--ch-image`` is given.

Prints one JSON object on stdout (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "model=mlp",
    "train.num_envs=8",
    "train.total_env_steps=800",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "algo.rollout_steps=25",
    "algo.epochs=2",
    "algo.num_minibatches=2",
    "model.hidden=16",
    "logger.progress=false",
    "logger.wandb_mode=disabled",
    "train.threads=1",
]


def first_iteration_s(cmd: list[str], metrics: Path, timeout: float = 600) -> float:
    """Seconds from starting ``cmd`` to the first data row of ``metrics`` (then waits for the command)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = None
    while time.perf_counter() - t0 < timeout:
        if seen is None and metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            seen = time.perf_counter() - t0
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0 or seen is None:
        raise RuntimeError(f"{' '.join(cmd[:6])}... failed ({proc.returncode}): {err[-1500:]}")
    return seen


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="eqmarl:cpu")
    ap.add_argument("--ch-image", default=None, help="a Charliecloud directory image of the same image")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    inspect = json.loads(
        subprocess.run(["docker", "image", "inspect", a.image], capture_output=True, text=True, check=True).stdout
    )[0]
    save = subprocess.Popen(["docker", "save", a.image], stdout=subprocess.PIPE)
    gz = subprocess.run(["gzip", "-c"], stdin=save.stdout, capture_output=True, check=True)
    save.wait()
    result: dict = {
        "image": a.image,
        "image_id": inspect["Id"][:19],
        "unpacked_bytes": inspect["Size"],
        "compressed_bytes": len(gz.stdout),
        "layers": len(inspect["RootFS"]["Layers"]),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
    }
    uid = f"{os.getuid()}:{os.getgid()}"
    runs: dict[str, list[float]] = {"docker_to_first_iteration_s": [], "docker_doctor_s": [], "docker_true_s": []}
    if a.ch_image:
        runs.update({"ch_run_to_first_iteration_s": [], "ch_run_true_s": []})
    os.environ.setdefault("USER", "root")  # ch-run needs it
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:  # under /tmp, which ch-run binds by default
            os.chmod(tmp, 0o777)
            run = Path(tmp) / "run"
            cmd = [
                "docker",
                "run",
                "--rm",
                "-u",
                uid,
                "-v",
                f"{tmp}:{tmp}",
                a.image,
                "python",
                "/opt/eqmarl/launch.py",
                *TINY,
                f"hydra.run.dir={run}",
            ]
            runs["docker_to_first_iteration_s"].append(first_iteration_s(cmd, run / "metrics.csv"))
            runs["docker_doctor_s"].append(timed(["docker", "run", "--rm", a.image, "eqmarl", "doctor", "--json"]))
            runs["docker_true_s"].append(timed(["docker", "run", "--rm", a.image, "true"]))
            if a.ch_image:
                run = Path(tmp) / "ch-run"
                cmd = [
                    "ch-run",
                    "--set-env",
                    a.ch_image,
                    "--",
                    "python",
                    "/opt/eqmarl/launch.py",
                    *TINY,
                    f"hydra.run.dir={run}",
                ]
                runs["ch_run_to_first_iteration_s"].append(first_iteration_s(cmd, run / "metrics.csv"))
                runs["ch_run_true_s"].append(timed(["ch-run", a.ch_image, "--", "true"]))
    for k, v in runs.items():
        result[k] = {"median": round(statistics.median(v), 2), "all": [round(x, 2) for x in v]}
    if a.ch_image:
        du = subprocess.run(["du", "-sb", a.ch_image], capture_output=True, text=True, check=True).stdout.split()[0]
        result["ch_image_bytes"] = int(du)
    # the same tiny run on the host, for comparison (no container)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        host = first_iteration_s(
            [sys.executable, str(ROOT / "launch.py"), *TINY, f"hydra.run.dir={run}"], run / "metrics.csv"
        )
    result["host_to_first_iteration_s"] = round(host, 2)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    from eqmarl.core.log import json_main

    json_main(main)
