"""``eqmarl doctor``: --json, --require, and the StarCraft II checks on a stand-in installation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eqmarl import doctor
from eqmarl.install_sc2 import BASE_VERSION, REQUIRED_MAP


def standin_sc2(root: Path) -> Path:
    """The installed layout with a shell script as SC2_x64 (a stand-in, not the game)."""
    exe = root / "Versions" / BASE_VERSION / "SC2_x64"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    (root / "Maps" / "SMAC_Maps").mkdir(parents=True)
    (root / "Maps" / "SMAC_Maps" / REQUIRED_MAP).write_text("stand-in")
    return root


def test_json_and_require(tmp_path, monkeypatch, capfd):
    # capfd: the report goes to file descriptor 1 (stdout_to_stderr keeps it for the JSON)
    monkeypatch.setenv("SC2PATH", str(standin_sc2(tmp_path / "StarCraftII")))
    monkeypatch.setattr(doctor, "CHECKS", {k: doctor.CHECKS[k] for k in ("sc2", "maps", "sc2_starts", "wandb")})
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    assert doctor.main(as_json=True, require="sc2,maps") == 0
    rep = json.loads(capfd.readouterr().out)
    checks = rep["checks"]
    assert checks["sc2"] == {"ok": True, "detail": f"4.10 ({BASE_VERSION}) at {tmp_path / 'StarCraftII'}", "fix": ""}
    assert checks["maps"]["ok"]
    assert not checks["sc2_starts"]["ok"] and "not an ELF binary" in checks["sc2_starts"]["detail"]
    assert "WANDB_API_KEY set" in checks["wandb"]["detail"] and "0123456789" not in json.dumps(rep)
    assert rep["missing"] == []
    # another version only: named, and required sc2 fails with exit 1
    (tmp_path / "StarCraftII" / "Versions" / BASE_VERSION).rename(tmp_path / "StarCraftII" / "Versions" / "Base69232")
    assert doctor.main(require="sc2") == 1
    out, err = capfd.readouterr()
    assert "Base69232 (4.6.2)" in out and "required but missing: sc2" in err


def test_unknown_requirement_lists_the_allowed(capsys):
    assert doctor.main(require="sc3") == 2
    err = capsys.readouterr().err
    assert "--require sc3" in err and "sc2" in err and "gpu" in err


def test_image_built_without_sc2_says_so(tmp_path, monkeypatch):
    (tmp_path / "NOT_INSTALLED").write_text("built without StarCraft II (SC2_ACCEPT_LICENSE=no)")
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    c = doctor.check_sc2()
    assert not c.ok and "built without StarCraft II" in c.detail and "install-sc2" in c.fix


@pytest.mark.gpu
def test_gpu_and_nccl_on_a_gpu_machine():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    assert doctor.check_gpu().ok and doctor.check_nccl().ok
