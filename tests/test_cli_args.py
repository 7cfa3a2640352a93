"""``eqmarl``'s own command line: arguments, overrides, outputs and their permissions.

* A bad argument of any subcommand exits 2 with one line naming it and the allowed values
  (never a traceback, never silently ignored).
* An ``env.*`` override that eval, render or xplay refuse is named by its full key.
* Outputs are written atomically: a read-only or full disk exits 1 with one line naming
  the file, leaves no partial or temporary file, and an earlier file stays as it was; a
  missing output directory is created.
* Every file a run and the commands write is created like an ordinary file: mode 0o666
  less the umask (0o640 under umask 027 here; ``tempfile.mkstemp`` made config.json and
  checkpoints 0o600).

Read-only and full disks are real tmpfs mounts (tests/test_disk_faults.py's ``tmpfs``): we
run as root, so file modes would not stop a write.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from eqmarl.cli import main as cli_main
from eqmarl.core.files import OutputWriteError, atomic_write, json_text
from tests.conftest import TINY, launch_cmd, subprocess_env
from tests.test_disk_faults import tmpfs

CLI = [sys.executable, "-m", "eqmarl.cli"]
TINY_RUN = [*TINY, "train.total_env_steps=200"]  # 1 iteration, 1 checkpoint, continuous MPE actions


UMASK = 0o027  # the tiny run trains under it: its files must be 0o640, its dirs 0o750


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A tiny run trained under :data:`UMASK`, and the mode of each of its paths right after."""
    d = tmp_path_factory.mktemp("cli") / "run"
    p = subprocess.run(
        launch_cmd(*TINY_RUN, f"hydra.run.dir={d}"),
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
        check=False,
        preexec_fn=lambda: os.umask(UMASK),
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return d, {str(x.relative_to(d)): stat.S_IMODE(x.stat().st_mode) for x in [d, *d.rglob("*")]}


@pytest.fixture
def run(trained: tuple[Path, dict[str, int]]) -> Path:
    return trained[0]


def cli(argv: list[str], capfd: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run ``eqmarl`` in this process: (exit code, stdout, stderr)."""
    capfd.readouterr()
    try:
        rc = cli_main(argv)
    except SystemExit as e:  # argparse's exit
        rc = int(e.code or 0)
    out, err = capfd.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("eqmarl")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------- arguments
BAD_ARGS = [
    # (argv after the run dir placeholder RUN, the argument named, a piece of what is allowed)
    (["eval", "RUN", "--episodes", "0"], "--episodes", "[1, 1000000]"),
    (["eval", "RUN", "--episodes", "-1"], "--episodes", "[1, 1000000]"),
    (["eval", "RUN", "--episodes", "many"], "--episodes", "an integer"),
    (["eval", "RUN", "--seed", "-5"], "--seed", "[0, 2147483647]"),
    (["eval", "RUN", "--device", "gpu"], "--device", "cpu"),
    (["eval", "RUN", "--out", "RUN"], "--out", "a file path"),
    (["eval", "RUN", "--bogus"], "unrecognized arguments: --bogus", ""),
    (["eval", "NOPE"], "run", "a run directory or a checkpoint file"),
    (["render", "RUN", "--fps", "0"], "--fps", "[1, 100]"),
    (["render", "RUN", "--fps", "1000"], "--fps", "[1, 100]"),
    (["render", "RUN", "--steps", "0"], "--steps", ">= 1"),
    (["render", "RUN", "--seed", "x"], "--seed", "an integer"),
    (["render", "RUN", "--out", "episode.png"], "--out", ".gif"),
    (["render", "NOPE"], "run", "a run directory or a checkpoint file"),
    (["xplay", "RUN", "--games", "0"], "--games", "[1, 1000000]"),
    (["xplay", "RUN", "--seed", "-1"], "--seed", "[0, 2147483647]"),
    (["xplay", "RUN", "--out", "RUN/metrics.csv"], "--out", "a directory"),
    (["xplay", "RUN", "--eqc", "C3"], "--eqc", "no finite symmetry group"),
    (["xplay", "NOPE"], "run_dirs", "run directories"),
    (["plot", "NOPE"], "run_dirs", "an existing path"),
    (["plot-curves", "RUN", "--threshold", "inf"], "--threshold", "a finite number"),
    (["plot-curves", "RUN", "--at", "nan"], "--at", "a finite number"),
    (["plot-curves", "RUN", "--out", "curves.xyz"], "--out", ".png"),
    (["plot-curves", "RUN", "--metric", "nope"], "--metric", "eval_return"),
    (["plot-curves", "RUN", "--json", "RUN"], "--json", "a file path"),
    (["plot-curves", "NOPE"], "dirs", "an existing path"),
    (["sync", "RUN", "--timeout", "nan"], "--timeout", "a finite number > 0"),
    (["sync", "NOPE"], "run_dirs", "an existing path"),
    (["doctor", "--require", "sc3"], "--require", "sc2"),
    (["install-sc2", "--sha256", "abc"], "--sha256", "64 hexadecimal digits"),
    (["install-sc2", "--url", "notaurl"], "--url", "https://"),
    (["install-sc2", "--dest", "RUN/metrics.csv"], "--dest", "a directory"),
    (["nope"], "COMMAND", "eval"),
]


@pytest.mark.parametrize(("argv", "named", "allowed"), BAD_ARGS, ids=[" ".join(a[0]) for a in BAD_ARGS])
def test_bad_arguments_exit_2_naming_them(
    argv: list[str], named: str, allowed: str, run: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """Old main: tracebacks (--episodes 0, --games 0, --fps 0, --steps 0, --at nan, --out .xyz,
    a non-checkpoint file, --url notaurl), ignored arguments (--bogus) or exit 0 (--threshold inf)."""
    argv = [str(run) if a == "RUN" else str(tmp_path / "nope") if a == "NOPE" else a for a in argv]
    argv = [a.replace("RUN/", f"{run}/") for a in argv]
    if argv[0] == "plot-curves" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "c.png")]
    if argv[0] == "xplay" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "xp")]
    rc, out, err = cli(argv, capfd)
    assert rc == 2, err
    line = one_line(err)
    assert line.startswith(f"eqmarl {argv[0]}: " if argv[0] != "nope" else "eqmarl: ")
    assert named in line and allowed in line
    assert out == ""
    assert not (tmp_path / "xp").exists() and not (tmp_path / "c.png").exists()


def test_not_a_checkpoint_file_is_bad_input(run: Path, capfd: pytest.CaptureFixture) -> None:
    """Old main: an UnpicklingError traceback."""
    rc, _, err = cli(["eval", str(run / "metrics.csv"), "--episodes", "2"], capfd)
    assert rc == 2 and "not an eqmarl checkpoint" in one_line(err)


def test_missing_out_dirs_are_created(run: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """Old main: ``eqmarl eval --out <missing dir>/x.json`` exited 0 and wrote nothing.
    Options and overrides may come in any order (old main ignored an override after an option)."""
    out = tmp_path / "a" / "b" / "eval.json"
    rc, stdout, err = cli(["eval", str(run), "--episodes", "2", "env.episode_limit=5", "--out", str(out)], capfd)
    assert rc == 0, err
    assert json.loads(stdout) == json.loads(out.read_text())
    assert json.loads(stdout)["env"]["episode_limit"] == 5
    gif = tmp_path / "c" / "d" / "episode.gif"
    rc, _, err = cli(["render", str(run), "--out", str(gif), "--steps", "2"], capfd)
    assert rc == 0 and gif.read_bytes()[:3] == b"GIF", err


def test_eval_of_a_checkpoint_file_writes_beside_its_run(run: Path, capfd: pytest.CaptureFixture) -> None:
    """Old main: the default --out was <checkpoint file>/eval_train.json, silently not written."""
    ckpt = sorted((run / "checkpoints").glob("ckpt_*.pt"))[-1]
    rc, _, err = cli(["eval", str(ckpt), "--episodes", "2", "env.n_agents=2"], capfd)
    assert rc == 0, err
    assert json.loads((run / "eval_env.n_agents=2.json").read_text())["episodes"] == 2


# --------------------------------------------------------------------- overrides
BAD_OVERRIDES = [
    ("env.n_agents=abc", "env.n_agents", "an integer"),
    ("env.n_agents=1.5", "env.n_agents", "an integer"),
    ("env.n_agents=null", "env.n_agents", "an integer"),
    ("env.continuous_actions=maybe", "env.continuous_actions", "true or false"),
    ("env.n_landmarks=abc", "env.n_landmarks", "an integer or null"),
    ("env.scenario=[1,2]", "env.scenario", "a string"),
    ("env.n_agents=-3", "env.n_agents", "> 0"),
    ("env.scenario=simple_nope", "env.scenario", "simple_spread"),
    ("env.n_prey=2", "env.n_prey", "simple_tag"),
    ("env.bogus=1", "env.bogus", "an env key of this run"),
    ("env.name=lever", "env.name", "mpe only"),
    ("algo.lr=1", "algo.lr", "env.<key>=<value>"),
]


@pytest.mark.parametrize("cmd", ["eval", "render", "xplay"])
@pytest.mark.parametrize(("override", "key", "allowed"), BAD_OVERRIDES, ids=[o[0] for o in BAD_OVERRIDES])
def test_bad_overrides_name_the_full_key(
    cmd: str, override: str, key: str, allowed: str, run: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """Old main: omegaconf's multi-line message naming ``n_agents`` (``full_key: n_agents``)."""
    out = ["--out", str(tmp_path / ("x.gif" if cmd == "render" else "x"))]
    rc, _, err = cli([cmd, str(run), override, *out], capfd)
    assert rc == 2, err
    line = one_line(err)
    assert f"{key}=" in line and allowed in line, line
    assert "full_key" not in err


# ------------------------------------------------------------------------ disks
OUTPUTS = {
    # command -> (argv after the run dir with OUT for the output path, files it writes under OUT)
    "eval": (["--episodes", "2", "--out", "OUT/eval.json"], ["eval.json"]),
    "render": (["--steps", "2", "--out", "OUT/episode.gif"], ["episode.gif"]),
    "xplay": (["--games", "2", "--out", "OUT/xp"], ["xp/crossplay.json", "xp/crossplay.csv", "xp/crossplay.png"]),
    "plot-curves": (["--out", "OUT/curves.png"], ["curves.png", "curves.json"]),
}


def _argv(cmd: str, run: Path, out: Path) -> list[str]:
    return [cmd, str(run), *(a.replace("OUT", str(out)) for a in OUTPUTS[cmd][0])]


@pytest.mark.parametrize("cmd", list(OUTPUTS))
def test_read_only_out_exits_1_naming_it(cmd: str, run: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """Old main: a traceback (render, xplay, plot-curves) or exit 0 with nothing written (eval)."""
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        rc, out, err = cli(_argv(cmd, run, ro), capfd)
        left = sorted(p.name for p in ro.rglob("*"))
    assert rc == 1, err
    line = one_line(err)
    assert f"cannot write --out {ro}" in line and "read-only file system" in line
    assert left == [] and out == ""


@pytest.mark.parametrize("cmd", list(OUTPUTS))
def test_full_disk_exits_1_and_keeps_the_earlier_file(
    cmd: str, run: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """A full tmpfs holding an earlier output: the new output does not fit; the earlier one
    stays byte for byte, and no temporary file is left.  Old main: a traceback and
    a truncated file (render), or exit 0 with a truncated file."""
    with tmpfs(tmp_path / "full", "64k") as full:
        first = full / OUTPUTS[cmd][1][0]
        first.parent.mkdir(parents=True, exist_ok=True)
        first.write_bytes(b"earlier")
        with pytest.raises(OSError), open(full / "filler", "wb", buffering=0) as f:
            while True:  # fill every page
                f.write(b"\0" * 4096)
        rc, _, err = cli(_argv(cmd, run, full), capfd)
        after = first.read_bytes()
        tmp_left = [p.name for p in full.rglob("*.tmp")]
    assert rc == 1, err
    line = one_line(err)
    assert "cannot write" in line and "No space left on device" in line
    assert after == b"earlier" and tmp_left == []


def test_plot_into_a_read_only_run_exits_1(run: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """Old main: a traceback from matplotlib."""
    src = tmp_path / "copy"
    src.mkdir()
    for name in ("metrics.csv", "config.json"):
        (src / name).write_bytes((run / name).read_bytes())
    with tmpfs(tmp_path / "ro", "1m", read_only=True, populate=src) as ro:
        rc, _, err = cli(["plot", str(ro / "copy")], capfd)
    assert rc == 1
    assert f"cannot write {ro / 'copy' / 'learning_curve.png'} (Read-only file system)" in one_line(err)


def test_stdout_on_a_full_disk_exits_1(run: Path, tmp_path: Path) -> None:
    """``eqmarl plot-curves > /dev/full``: one line, exit 1.  Old main: a traceback."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            [*CLI, "plot-curves", str(run), "--out", str(tmp_path / "c.png")],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
            timeout=300,
            check=False,
        )
    assert p.returncode == 1, p.stderr[-2000:]
    assert "eqmarl plot-curves: cannot write stdout (No space left on device)" in p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr


# ------------------------------------------------------------------ permissions
def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def _expected(path: Path) -> int:
    return 0o777 & ~UMASK if path.is_dir() else 0o666 & ~UMASK


def test_every_file_honours_the_umask(
    trained: tuple[Path, dict[str, int]], tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """Under umask 027 every file of a run and of the commands' outputs is 0o640 and every
    directory 0o750.  Old main: config.json, checkpoints and ``latest`` were 0o600 (mkstemp),
    and xplay on continuous actions crashed."""
    run, launch_modes = trained
    for must in ("config.json", "metrics.csv", "learning_curve.png", "checkpoints/latest", ".hydra/config.yaml"):
        assert must in launch_modes
    assert any(n.startswith("checkpoints/ckpt_") for n in launch_modes)
    wrong = {n: oct(m) for n, m in launch_modes.items() if m != _expected(run / n)}
    assert wrong == {}

    out = tmp_path / "out"
    default_eval = run / "eval_env.episode_limit=3.json"
    old = os.umask(UMASK)
    try:
        for argv in (
            ["eval", str(run), "--episodes", "2", "env.episode_limit=3"],  # default --out: in the run dir
            ["eval", str(run), "--episodes", "2", "--out", str(out / "e" / "eval.json")],
            ["render", str(run), "--steps", "2", "--out", str(out / "r" / "episode.gif")],
            ["xplay", str(run), "--games", "2", "--out", str(out / "xp")],
            ["plot-curves", str(run), "--out", str(out / "c" / "curves.png")],
        ):
            rc, _, err = cli(argv, capfd)
            assert rc == 0, err
        (run / "learning_curve.png").unlink()
        rc, _, err = cli(["plot", str(run)], capfd)
        assert rc == 0, err
    finally:
        os.umask(old)
    paths = [default_eval, run / "learning_curve.png", *out.rglob("*")]
    names = {str(x.relative_to(tmp_path)) for x in out.rglob("*")}
    assert {"out/xp/crossplay.json", "out/xp/crossplay.csv", "out/xp/crossplay.png"} <= names
    assert {"out/e/eval.json", "out/r/episode.gif", "out/c/curves.png", "out/c/curves.json"} <= names
    modes = {x: stat.S_IMODE(x.stat().st_mode) for x in paths}
    wrong = {str(x): oct(m) for x, m in modes.items() if m != _expected(x)}
    assert wrong == {}


def test_atomic_write_honours_the_umask_and_keeps_the_old_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        a = atomic_write(tmp_path / "sub" / "a.json", "{}")
        assert stat.S_IMODE(a.stat().st_mode) == 0o644
        os.umask(0o002)
        assert stat.S_IMODE(atomic_write(tmp_path / "b", b"x").stat().st_mode) == 0o664
    finally:
        os.umask(old)
    with pytest.raises(OutputWriteError, match=r"cannot write .*sub \(Is a directory\)"):
        atomic_write(tmp_path / "sub", "{}")
    assert a.read_text() == "{}"
    assert sorted(x.name for x in tmp_path.rglob("*")) == ["a.json", "b", "sub"]


def test_json_outputs_are_strict() -> None:
    assert json.loads(json_text({"se": float("nan"), "x": [float("inf"), 1.0]})) == {"se": None, "x": [None, 1.0]}
