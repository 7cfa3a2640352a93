#!/usr/bin/env bash
# The GPU check (issue 18): one script, sized to finish in under 8 minutes on one GPU,
# that prints one JSON document on stdout (everything else on stderr):
#   - the device (doctor's gpu check, torch/CUDA versions, the GPU's name and memory);
#   - MPE (the embedded default) and SMAX (5v5) training frames/s on the GPU, eager and
#     compiled (train.compile=reduce-overhead: torch.compile plus CUDA graphs; default
#     mode with --device cpu), the compile seconds apart (compile_s, in the warm-up);
#   - E2GN2 at 1k, 10k and 100k agents with kNN 16 (simple_spread_large): agent-steps/s
#     of the whole loop and the update's peak memory (benchmarks/agent_scaling.py);
#   - one NCCL DDP optimizer step with one rank (init, all-reduce of the gradients, step).
# Each part runs with its own time limit (at most 570 s in all, about 6 minutes when nothing runs out of time); a part that fails or runs out of time is
# reported as {"error": ...} and the others still run.
#
#   bash benchmarks/gpu_check.sh [--device cuda|cpu] [--tiny] > gpu_check.json
#
# --tiny shrinks every part (seconds on a CPU): the way to check the script itself where
# no GPU is lent.  Commit the JSON of a real run under docs/results/gpu_check.json.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec python - "$@" <<'PY'
import argparse
import json
import subprocess
import sys
import time

from eqmarl.core.log import json_main

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
ap.add_argument("--tiny", action="store_true")
args = ap.parse_args()
dev, tiny = args.device, args.tiny
py = sys.executable


def part(cmd, timeout):
    """Run one benchmark (it prints one JSON document); its result, or why there is none."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout} s", "cmd": " ".join(cmd)}
    print(p.stderr[-4000:], file=sys.stderr)
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1:] or ''}", "cmd": " ".join(cmd)}
    try:
        out = json.loads(p.stdout)
    except json.JSONDecodeError as e:
        return {"error": f"stdout is not JSON ({e})", "cmd": " ".join(cmd)}
    return {"seconds": round(time.perf_counter() - t0, 1), "result": out}


DEVICE_INFO = r"""
import json, torch
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(name=p.name, memory_gb=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
print(json.dumps(info))
"""

DDP_STEP = r"""
import json, os, sys, time, torch, torch.distributed as dist
dev = sys.argv[1]
os.environ.setdefault("MASTER_ADDR", "127.0.0.1"); os.environ.setdefault("MASTER_PORT", "29533")
backend = "nccl" if dev == "cuda" else "gloo"
dist.init_process_group(backend, rank=0, world_size=1)
model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 2)).to(dev)
ddp = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
x = torch.randn(4096, 256, device=dev)
times = []
for _ in range(5):
    t0 = time.perf_counter()
    opt.zero_grad(); ddp(x).square().mean().backward(); opt.step()
    if dev == "cuda": torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
dist.destroy_process_group()
print(json.dumps({"backend": backend, "world_size": 1, "step_ms_last": round(times[-1] * 1e3, 3), "ok": True}))
"""


def main():
    device = f"train.device={dev}"
    iters = ["--iterations", "1" if tiny else "5", "--warmup", "1"]
    # algo.num_minibatches must divide rollout_steps * num_envs: the default's 20 does not divide SMAX's 64 or 8,192
    mpe = ["train.num_envs=8", "train.total_env_steps=1000000"] if tiny else []
    smax = [
        "env=smax",
        "env.movement=discrete",
        "train.num_envs=" + ("8" if tiny else "1024"),
        "algo.rollout_steps=8",
        "algo.num_minibatches=4",
    ]
    agents = "50,100" if tiny else "1000,10000,100000"
    out = {"benchmark": "gpu_check", "device": dev, "tiny": tiny}
    out["device_info"] = part([py, "-c", DEVICE_INFO], 30)
    out["doctor"] = part([py, "-m", "eqmarl.cli", "doctor", "--json"], 40)
    compiled = "train.compile=" + ("reduce-overhead" if dev == "cuda" else "default")
    throughput = [py, "benchmarks/train_throughput.py", *iters, device]
    out["mpe_default_frames_per_s"] = {
        "eager": part([*throughput, *mpe], 60),
        "compiled": part([*throughput, compiled, *mpe], 100),
    }
    out["smax_5v5_frames_per_s"] = {
        "eager": part([*throughput, *smax], 90),
        "compiled": part([*throughput, compiled, *smax], 110),
    }
    out["e2gn2_knn16_agent_scaling"] = part(
        [py, "benchmarks/agent_scaling.py", "--agents", agents, "--graphs", "16", "--ckpt", "0", "--timeout-s", "35",
         "--mem-cap-gb", "64", device], 110)
    out["ddp_one_rank_step"] = part([py, "-c", DDP_STEP, dev], 30)
    return out


json_main(main)
PY
