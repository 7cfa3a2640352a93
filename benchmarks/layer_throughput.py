"""Throughput of one message-passing layer (gnn / egnn / e2gn2) on complete graphs.

For each model, width and node count, a batch of complete graphs (``N (N - 1)`` directed
edges each) goes through one layer; the batch size is calibrated so that one
measurement takes about ``--target-s`` seconds (at least one graph per batch; the
largest graphs take longer than the target with a single graph).  Reported:

* ``fwd_edges_per_s``: forward under ``torch.no_grad()`` (as in rollouts);
* ``fwd_bwd_edges_per_s``: forward + backward of ``sum(h') + sum(u')`` with respect to
  the parameters and the inputs (as in a PPO update inside a deeper stack).

The equivariant layers carry two vector channels (position, velocity) as in MPE; the
``pyg`` backend's edge list is built once per configuration, outside the timed region.
Progress goes to stderr; stdout is one JSON object.

Usage::

    python benchmarks/layer_throughput.py                 # CPU, ~2-3 minutes on 2 cores
    python benchmarks/layer_throughput.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import torch

from eqmarl.core.graph import EntityGraph
from eqmarl.models.e2gn2 import E2GN2Layer
from eqmarl.models.egnn import EGNNLayer
from eqmarl.models.gnn import GNNLayer
from eqmarl.models.message_passing import GraphBatch, MessagePassingLayer, graph_batch

LAYERS: dict[str, tuple[Callable[..., MessagePassingLayer], int]] = {
    "gnn": (GNNLayer, 0),
    "egnn": (EGNNLayer, 2),
    "e2gn2": (E2GN2Layer, 2),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_inputs(
    n_graphs: int, n_nodes: int, width: int, n_channels: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, GraphBatch]:
    """Random features ``h [B, N, H]``, vectors ``u [B, N, K, 2]`` and complete graphs."""
    graph = EntityGraph(
        h=torch.zeros(n_graphs, n_nodes, 1, device=device, dtype=dtype),
        x=torch.randn(n_graphs, n_nodes, 2, device=device, dtype=dtype),
        v=torch.randn(n_graphs, n_nodes, 2, device=device, dtype=dtype),
        node_mask=torch.ones(n_graphs, n_nodes, dtype=torch.bool, device=device),
        agent_node=torch.arange(1, device=device),
    )
    g = graph_batch(graph, use_velocity=True, dtype=dtype)
    h = torch.randn(n_graphs, n_nodes, width, device=device, dtype=dtype)
    return h, g.u[:, :, :n_channels].contiguous(), g


def time_once(
    layer: MessagePassingLayer,
    n_graphs: int,
    n_nodes: int,
    width: int,
    backend: str,
    backward: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> float:
    """Seconds for one forward (or forward + backward) on ``n_graphs`` complete graphs."""
    h, u, g = make_inputs(n_graphs, n_nodes, width, layer.n_channels, device, dtype)
    if backend == "pyg":
        g.edge_index()  # cached: built outside the timed region
    if backward:
        h.requires_grad_(True)
        u.requires_grad_(True)
        layer.zero_grad(set_to_none=True)
        _sync(device)
        t0 = time.perf_counter()
        h2, u2 = layer(h, u, g, backend)
        (h2.sum() + u2.sum()).backward()
    else:
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            layer(h, u, g, backend)
    _sync(device)
    return time.perf_counter() - t0


def measure(
    layer: MessagePassingLayer,
    n_nodes: int,
    width: int,
    backend: str,
    backward: bool,
    device: torch.device,
    dtype: torch.dtype,
    target_s: float,
    max_edges: int,
) -> dict[str, float]:
    """Calibrate the batch size to ~``target_s`` per call, then time it (edges/s)."""
    edges = n_nodes * (n_nodes - 1)
    cap = max(1, max_edges // edges)
    b = 1
    t = time_once(layer, b, n_nodes, width, backend, backward, device, dtype)  # also the warm-up
    if t >= target_s:  # one graph already takes the whole budget: that call is the measurement
        return {"batch": 1, "edges_per_batch": edges, "seconds": t, "edges_per_s": edges / t}
    while t < target_s / 4 and b < cap:
        b = min(cap, b * max(2, int(target_s / 4 / max(t, 1e-6))))
        t = time_once(layer, b, n_nodes, width, backend, backward, device, dtype)
    if t < target_s / 2 and b < cap:
        b = min(cap, max(b, int(b * target_s / max(t, 1e-6))))
    total, reps = 0.0, 0
    while reps == 0 or (total < target_s and reps < 3):
        total += time_once(layer, b, n_nodes, width, backend, backward, device, dtype)
        reps += 1
    return {"batch": b, "edges_per_batch": b * edges, "seconds": total / reps, "edges_per_s": b * edges * reps / total}


def device_info(device: torch.device) -> dict[str, object]:
    from eqmarl.core.machine import cpu_model

    info: dict[str, object] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return info


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--models", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    p.add_argument("--widths", nargs="+", type=int, default=[32, 64])
    p.add_argument("--nodes", nargs="+", type=int, default=[6, 20, 100, 300, 1000])
    p.add_argument("--pyg-max-nodes", type=int, default=100, help="also time the pyg backend up to this size")
    p.add_argument("--target-s", type=float, default=0.2, help="seconds per measurement")
    p.add_argument("--max-edges", type=int, default=0, help="cap on edges per batch (0: 2e6 CPU, 5e7 GPU)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--activation", default="tanh", help="as model.activation")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device")
    dtype = getattr(torch, args.dtype)
    max_edges = args.max_edges or (50_000_000 if device.type == "cuda" else 2_000_000)
    torch.manual_seed(0)
    start = time.perf_counter()
    results = []
    for name in args.models:
        cls, n_channels = LAYERS[name]
        for width in args.widths:
            layer = cls(width, args.activation, n_channels).to(device=device, dtype=dtype)
            for n in args.nodes:
                backends = ["dense"] + (["pyg"] if n <= args.pyg_max_nodes else [])
                for backend in backends:
                    fwd = measure(layer, n, width, backend, False, device, dtype, args.target_s, max_edges)
                    bwd = measure(layer, n, width, backend, True, device, dtype, args.target_s, max_edges)
                    row = {
                        "model": name,
                        "width": width,
                        "nodes": n,
                        "backend": backend,
                        "edges_per_graph": n * (n - 1),
                        "batch_fwd": fwd["batch"],
                        "batch_fwd_bwd": bwd["batch"],
                        "fwd_edges_per_s": round(fwd["edges_per_s"]),
                        "fwd_bwd_edges_per_s": round(bwd["edges_per_s"]),
                    }
                    results.append(row)
                    print(
                        f"{name:6s} H={width:3d} N={n:5d} {backend:5s} fwd {row['fwd_edges_per_s']:>12,} e/s "
                        f"(B={fwd['batch']})  fwd+bwd {row['fwd_bwd_edges_per_s']:>12,} e/s (B={bwd['batch']})",
                        file=sys.stderr,
                        flush=True,
                    )
    report: dict[str, object] = {
        "benchmark": "layer_throughput",
        "unit": "directed edges per second, one layer",
        "dtype": args.dtype,
        "activation": args.activation,
        "vector_channels": {k: v[1] for k, v in LAYERS.items()},
        "target_s": args.target_s,
        "device_info": device_info(device),
        "results": results,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    return report


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
