"""Config composition and validation: bad values stop early, naming key and allowed values."""

import os
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from eqmarl.config import Config, ConfigError, HanabiEnvConfig, MpeEnvConfig
from eqmarl.core.errors import InvalidOption
from tests.conftest import ROOT, compose, launch_cmd, subprocess_env


def test_default_composes_to_typed_objects():
    cfg = compose()
    assert isinstance(cfg, Config)
    assert isinstance(cfg.env, MpeEnvConfig)
    assert cfg.env.backend == "vmas" and cfg.env.scenario == "simple_spread" and cfg.env.n_agents == 3
    assert cfg.cluster.name == "local"


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("model.name=transformer", "model.name", "mlp"),
        ("env.scenario=simple_crypto", "env.scenario", "simple_spread, simple_tag"),
        ("env.backend=gym", "env.backend", "vmas, mpe2"),
        ("train.num_envs=0", "train.num_envs", "> 0"),
        ("model.hidden=-4", "model.hidden", "> 0"),
        ("algo.name=qmix", "algo.name", "ippo, mappo"),
        ("algo.gamma=1.5", "algo.gamma", "[0, 1]"),
        ("logger.wandb_mode=sometimes", "logger.wandb_mode", "auto, online, offline, disabled"),
        ("train.device=tpu", "train.device", "cpu, cuda, auto"),
    ],
)
def test_bad_values_name_key_and_allowed(override, key, allowed):
    with pytest.raises(ConfigError) as e:
        compose([override])
    assert e.value.key == key
    assert key in str(e.value) and allowed in str(e.value)


def test_minibatches_must_divide_batch():
    with pytest.raises(ConfigError) as e:
        compose(["train.num_envs=10", "algo.rollout_steps=25", "algo.num_minibatches=7"])
    msg = str(e.value)
    assert "algo.num_minibatches" in msg and "250" in msg and "5" in msg


def test_unknown_key_and_group_option_fail_at_compose():
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)) as e:
        compose(["train.num_env=3"])
    assert "num_env" in str(e.value)
    with pytest.raises(ConfigCompositionException) as e2:
        compose(["env=nosuchenv"])
    assert "nosuchenv" in str(e2.value) and "mpe" in str(e2.value)


def test_cli_bad_value_exits_nonzero_before_running(tmp_path, clean_env):
    out = tmp_path / "run"
    p = subprocess.run(
        launch_cmd("algo.num_minibatches=7", f"hydra.run.dir={out}"),
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2, p.stderr
    assert "algo.num_minibatches" in p.stderr and "allowed" in p.stderr
    assert not (out / "metrics.csv").exists() and not (out / "checkpoints").exists()


def test_appended_unknown_key_is_rejected():
    with pytest.raises(ConfigError) as e:
        compose(["+train.num_env=3"])
    assert e.value.key == "train.num_env" and "num_envs" in str(e.value)


def test_an_env_refusal_is_a_config_error_with_its_own_fields():
    """The env module states the allowed values and raises InvalidOption; the config
    reports it as it is (no message text parsed: the value keeps its type)."""
    assert ConfigError is InvalidOption
    with pytest.raises(ConfigError) as e:
        compose(["env=smax", "env.race=elves"])
    assert (e.value.key, e.value.value, e.value.allowed) == ("env.race", "elves", "terran, protoss, zerg")
    assert str(e.value) == "invalid config: env.race='elves'; allowed: terran, protoss, zerg"
    with pytest.raises(ConfigError) as e:
        compose(["env=hanabi", "model=mlp", "env.colors=7"])
    assert (e.value.key, e.value.value, e.value.allowed) == ("env.colors", 7, "1..5")


def test_make_env_passes_an_env_refusal_through():
    from eqmarl.build import make_env

    with pytest.raises(InvalidOption) as e:
        make_env(HanabiEnvConfig(backend="fast", colors=7), num_envs=1, seed=0)
    assert (e.value.key, e.value.value) == ("env.colors", 7)


def test_the_launcher_reports_an_env_refusal_as_bad_input():
    from eqmarl.launch.checks import bad_input_message, is_bad_input

    e = InvalidOption("env.n_agents", 1, "an integer >= 2 (a coordination game)")
    assert is_bad_input(e)
    assert bad_input_message(e) == "invalid config: env.n_agents=1; allowed: an integer >= 2 (a coordination game)"


def test_importing_the_config_imports_no_torch():
    """launch.py imports the config first: a bad override exits before torch is loaded."""
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    code = "import sys, eqmarl.config, eqmarl.launch.checks; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
