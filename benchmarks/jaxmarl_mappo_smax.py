#!/usr/bin/env python
"""JaxMARL's own MAPPO-RNN SMAX baseline, run unmodified, with a training-win-rate clock.

    python benchmarks/jaxmarl_mappo_smax.py --script <JaxMARL>/baselines/MAPPO/mappo_rnn_smax.py \
        [--scenario eqmarl_left | <JaxMARL map name>] [--seed 0] [--minutes 10] [--out FILE]

The script and its default config (``config/mappo_homogenous_rnn_smax.yaml`` beside it) are
JaxMARL's files, read from a JaxMARL checkout (nothing of them is copied into eqmarl; get
one with ``git clone https://github.com/FLAIROx/JaxMARL``).  The script needs ``distrax``
(``pip install distrax``), which eqmarl's ``smax`` extra does not install: its imports are
checked first, and a missing one is named before anything runs.  The module is imported as it is
and its ``make_train`` jitted as its ``main`` does, with every default setting kept (the
learning-rate schedule included: ``TOTAL_TIMESTEPS`` stays 1e7, and the run is stopped by
the clock, as a user who stops a run would).  Three names in the imported module are
replaced, none of them code that trains:

* ``wandb``: a recorder of what the script logs per update (``env_step``, ``win_rate``:
  episodes won / episodes ended in the update's rollout, ``returns``), each with the wall
  time; after ``--minutes`` of training the result is written and the process ends.
* ``HeuristicEnemySMAX`` / ``map_name_to_scenario``, only with ``--scenario eqmarl_left``:
  the env is eqmarl's SMAX scenario of ``experiment=smacv2_generalization`` (surrounded-left
  5v5 terran, eqmarl's start-position and unit-type generators, map size, 100-step episode
  limit; JaxMARL's own ``HeuristicEnemySMAX`` class with eqmarl's generators attached, as
  eqmarl's env attaches them), with the script's own keyword arguments (see enemy actions,
  walls kill, closest-target enemy).  JaxMARL's discrete actions and observations
  are used: only the battles are eqmarl's.  One difference stays: eqmarl's env clamps
  units pushed across a wall by SMAX's reset back inside; here SMAX's reset is used as it is.

With a JaxMARL map name (``smacv2_5_units``, ...) nothing is replaced but the logger.

The clocks: ``wall_s`` from the call of the compiled program (after the compile, as the
JaxMARL papers time it) and ``wall_s_with_compile`` from before the compile.  Prints one
JSON object on stdout (JAX's and the script's chatter goes to stderr).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# experiment=smacv2_generalization's battles (configs/env/smax.yaml + the preset)
EQMARL_LEFT = {
    "race": "terran",
    "n_units": 5,
    "n_enemies": 5,
    "start_positions": "surrounded",
    "surround_sides": "left",
    "episode_limit": 100,
}


# pip names of modules whose import name differs (the rest install under their own name)
PIP_NAMES = {"hydra": "hydra-core", "yaml": "pyyaml"}


def missing_imports(script: Path) -> list[str]:
    """The modules ``script`` imports (any absolute ``import``/``from`` in it) that this
    Python cannot find, by their top-level name: checked before anything runs, so a
    missing one (``distrax`` is not in eqmarl's ``smax`` extra) stops a comparison at its
    start instead of after the eqmarl side's runs."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(script.read_text(), filename=str(script))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def check_script(script: Path) -> None:
    """Exit with a message unless ``script`` exists and all it imports is installed."""
    if not script.is_file():
        raise SystemExit(f"--script {script}: no such file (JaxMARL's baselines/MAPPO/mappo_rnn_smax.py)")
    missing = missing_imports(script)
    if missing:
        pip = " ".join(PIP_NAMES.get(n, n) for n in missing)
        raise SystemExit(
            f"--script {script} imports {', '.join(missing)}, not installed in this Python: pip install {pip}"
        )


def _git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class _Recorder:
    """Stands in for the ``wandb`` module inside the script: ``log`` records, with the time."""

    def __init__(self, minutes: float, finish: Any, steps_per_update: int) -> None:
        self.steps_per_update = steps_per_update
        self.rows: list[dict[str, float]] = []
        self.t0: float | None = None
        self.t_start = time.perf_counter()
        self.limit_s = minutes * 60.0
        self.finish = finish

    def log(self, d: dict[str, Any]) -> None:
        now = time.perf_counter()
        t0 = self.t0 if self.t0 is not None else now
        self.rows.append(
            {
                # the script logs the steps before the update's rollout: count the rollout in
                "env_steps": int(d["env_step"]) + self.steps_per_update,
                "wall_s": round(now - t0, 3),
                "wall_s_with_compile": round(now - self.t_start, 3),
                "win_rate": float(d["win_rate"]),
                "return": float(d["returns"]),
            }
        )
        if now - t0 >= self.limit_s:
            self.finish(self)

    def init(self, *args: Any, **kwargs: Any) -> None:  # the script's main() calls it; unused here
        pass


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--script", required=True, type=Path, help="JaxMARL's baselines/MAPPO/mappo_rnn_smax.py")
    ap.add_argument("--config", type=Path, help="its config (default: config/mappo_homogenous_rnn_smax.yaml beside it)")
    ap.add_argument("--scenario", default="eqmarl_left", help="eqmarl_left or a JaxMARL map name (smacv2_5_units, ...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall time, after the compile")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--jaxmarl-commit", help="the JaxMARL commit the script is from (default: git of its folder)")
    args = ap.parse_args()
    check_script(args.script)

    from omegaconf import OmegaConf

    from eqmarl.envs.smax import import_jax

    jax = import_jax()
    cfg_path = args.config or args.script.parent / "config" / "mappo_homogenous_rnn_smax.yaml"
    config = OmegaConf.to_container(OmegaConf.load(cfg_path))
    assert isinstance(config, dict)
    config["SEED"] = args.seed
    if args.scenario != "eqmarl_left":
        config["MAP_NAME"] = args.scenario

    spec = importlib.util.spec_from_file_location("jaxmarl_mappo_rnn_smax", args.script)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    result: dict[str, Any] = {
        "benchmark": "jaxmarl_mappo_smax (python benchmarks/jaxmarl_mappo_smax.py)",
        "baseline": "JaxMARL MAPPO-RNN (baselines/MAPPO/mappo_rnn_smax.py), its default config, unmodified",
        "script": str(args.script),
        "jaxmarl_commit": args.jaxmarl_commit or _git_commit(args.script),
        "scenario": args.scenario,
        "seed": args.seed,
        "minutes": args.minutes,
        "config": {k: v for k, v in config.items() if not k.startswith("WANDB") and k not in ("ENTITY", "PROJECT")},
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "load_before": [round(v, 2) for v in os.getloadavg()],
    }
    if args.scenario == "eqmarl_left":
        from eqmarl.envs.smax import SmaxSMACv2

        heuristic_enemy_smax = mod.HeuristicEnemySMAX  # JaxMARL's class, as the script imports it

        def eqmarl_env(scenario: Any = None, **kwargs: Any) -> Any:
            """JaxMARL's HeuristicEnemySMAX with the script's kwargs, on eqmarl's battles (as SmaxSMACv2 sets them)."""
            import jax.numpy as jnp
            from jaxmarl.environments.smax import Scenario

            ref = SmaxSMACv2(num_envs=1, seed=args.seed, **EQMARL_LEFT)  # eqmarl's env: its generators and map
            n, m = ref.n_allies, ref.n_enemies
            env = heuristic_enemy_smax(
                scenario=Scenario(
                    unit_types=jnp.zeros((n + m,), dtype=jnp.uint8),
                    num_allies=n,
                    num_enemies=m,
                    smacv2_position_generation=True,
                    smacv2_unit_type_generation=True,
                ),
                map_width=int(ref.map_size),
                map_height=int(ref.map_size),
                max_steps=ref.episode_limit - 1,  # as SmaxSMACv2: SMAX counts the step before it
                **kwargs,
            )
            env._env.position_generator = ref._inner.position_generator
            env._env.unit_type_generator = ref._inner.unit_type_generator
            ref.close()
            return env

        mod.HeuristicEnemySMAX = eqmarl_env
        mod.map_name_to_scenario = lambda name: None
        result["env"] = {"eqmarl_scenario": EQMARL_LEFT, "as_in": "experiment=smacv2_generalization"}

    def finish(rec: _Recorder) -> None:
        result["rows"] = rec.rows
        result["load_after"] = [round(v, 2) for v in os.getloadavg()]
        text = json.dumps(result)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        os.write(stdout_fd, (text + "\n").encode())
        os._exit(0)  # stop the jitted run where it is (the clock's end), as a user would stop it

    rec = _Recorder(args.minutes, finish, int(config["NUM_ENVS"]) * int(config["NUM_STEPS"]))
    mod.wandb = rec
    rng = jax.random.PRNGKey(config["SEED"])
    t = time.perf_counter()
    compiled = jax.jit(mod.make_train(config)).lower(rng).compile()
    result["compile_s"] = round(time.perf_counter() - t, 2)
    rec.t0 = time.perf_counter()
    out = compiled(rng)
    jax.block_until_ready(out)
    finish(rec)  # the run ended (TOTAL_TIMESTEPS) before the clock did
    return result


if __name__ == "__main__":
    from eqmarl.core.log import stdout_to_stderr

    stdout_fd = os.dup(1)
    with stdout_to_stderr():
        main()
