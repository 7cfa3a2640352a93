"""The documentation's tested commands run as written, and its generated parts cover the code.

A fenced ``bash`` block right after the line ``<!-- tested -->`` (or ``<!-- tested
exit=N -->`` for a block that must end with exit code N) in ``docs/**/*.md`` or
``README.md`` is run here with ``bash -e`` in a fresh directory that links the checkout's
``launch.py``, ``configs/`` and ``benchmarks/``; ``python`` and ``eqmarl`` are this
interpreter and this checkout.  Every ``python launch.py`` line is shrunk to seconds by
:data:`TINY` (or :data:`TINY_RESUME` for a resume): a key the line sets is replaced, the
others are appended.  docs/development.md ("Tested commands") says the same for writers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!--\s*tested(?:\s+exit=(\d+))?\s*-->\s*$")
# what every fresh `python launch.py` of a tested block trains: 2 iterations of 4 envs x 25 steps
TINY = {
    "train.total_env_steps": "200",
    "train.num_envs": "4",
    "algo.rollout_steps": "25",
    "train.eval_episodes": "4",
    "logger.wandb_mode": "disabled",
}
# a resume may change only train.total_env_steps, train.max_iterations and logger.*
TINY_RESUME = {"train.total_env_steps": "400", "logger.wandb_mode": "disabled"}
PRELUDE = 'python() { "$EQMARL_DOCS_PYTHON" "$@"; }\neqmarl() { "$EQMARL_DOCS_PYTHON" -m eqmarl.cli "$@"; }\n'
BLOCK_TIMEOUT_S = 180


@dataclass(frozen=True)
class Block:
    """One tested block: where it is, its commands and the exit code it must end with."""

    path: str
    line: int  # the line of its ```bash fence (1-based)
    code: str
    exit_code: int = 0


def extract_blocks(text: str, path: str = "<text>") -> list[Block]:
    """The tested ``bash`` blocks of a Markdown text.

    Raises:
        ValueError: a marker not followed by a ```` ```bash ```` fence, or a fence never closed.
    """
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        if i + 1 >= len(lines) or lines[i + 1].strip() != "```bash":
            raise ValueError(f"{path}:{i + 1}: a tested marker must be followed by a ```bash fence")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{path}:{i + 2}: the tested block is never closed")
        blocks.append(Block(path, i + 2, "\n".join(lines[i + 2 : end]), int(m.group(1) or 0)))
    return blocks


def shrink(code: str) -> str:
    """``code`` with every ``python launch.py`` line given :data:`TINY` (:data:`TINY_RESUME`)."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        if not line.strip().startswith("python launch.py"):
            out.append(line)
            continue
        tokens = shlex.split(line, comments=True)
        tiny = TINY_RESUME if any(t.startswith("resume=") for t in tokens) else TINY
        keys = {t.split("=", 1)[0]: i for i, t in enumerate(tokens) if "=" in t}
        for key, value in tiny.items():
            if key in keys:
                tokens[keys[key]] = f"{key}={value}"
            else:
                tokens.append(f"{key}={value}")
        out.append(shlex.join(tokens))
    return "\n".join(out)


def run_block(block: Block, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run a block (shrunk) with ``bash -e`` in ``workdir``, which gets links to the checkout."""
    for name in ("launch.py", "configs", "benchmarks"):
        if not (workdir / name).exists():
            (workdir / name).symlink_to(ROOT / name)
    env = dict(os.environ, EQMARL_DOCS_PYTHON=sys.executable, WANDB_MODE="disabled")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", PRELUDE + shrink(block.code)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=BLOCK_TIMEOUT_S,
    )


def doc_blocks() -> list[Block]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [b for f in files for b in extract_blocks(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]


# ------------------------------------------------------------------ the extractor
def test_extract_finds_only_marked_bash_blocks_and_their_exit_codes():
    text = (
        "intro\n```bash\nnot tested\n```\n"
        "<!-- tested -->\n```bash\necho one\necho two\n```\n"
        "<!-- tested exit=2 -->\n```bash\nexit 2\n```\n"
    )
    blocks = extract_blocks(text, "x.md")
    assert [(b.line, b.code, b.exit_code) for b in blocks] == [(6, "echo one\necho two", 0), (11, "exit 2", 2)]


@pytest.mark.parametrize(
    "text",
    [
        "<!-- tested -->\n\n```bash\necho\n```\n",
        "<!-- tested -->\n```python\n1\n```\n",
        "<!-- tested -->\n```bash\necho\n",
    ],
)
def test_a_marker_without_its_bash_block_is_an_error(text):
    with pytest.raises(ValueError, match=r"x\.md"):
        extract_blocks(text, "x.md")


def test_shrink_replaces_the_keys_a_line_sets_and_appends_the_others():
    code = (
        "python launch.py train.total_env_steps=500000 model=mlp   # a comment\n"
        "python launch.py resume=runs/a train.total_env_steps=1000000\n"
        "python launch.py -m seed=0,1 \\\n    algo.rollout_steps=100\n"
        "eqmarl eval runs/a --episodes 20\n"
    )
    lines = shrink(code).splitlines()
    assert shlex.split(lines[0]) == ["python", "launch.py", "train.total_env_steps=200", "model=mlp"] + [
        f"{k}={v}" for k, v in TINY.items() if k != "train.total_env_steps"
    ]
    resumed = ["python", "launch.py", "resume=runs/a", "train.total_env_steps=400", "logger.wandb_mode=disabled"]
    assert shlex.split(lines[1]) == resumed
    assert "algo.rollout_steps=25" in shlex.split(lines[2]) and "algo.rollout_steps=100" not in lines[2]
    assert lines[3] == "eqmarl eval runs/a --episodes 20"


def test_a_block_fails_on_any_failing_command(tmp_path):
    assert run_block(Block("x.md", 1, "true\nfalse\ntrue"), tmp_path).returncode == 1
    broken = run_block(Block("x.md", 1, "eqmarl --help > /dev/null\neqmarl no-such-command"), tmp_path)
    assert broken.returncode == 2, broken.stderr
    assert "no-such-command" in broken.stderr


def test_the_docs_have_tested_blocks():
    blocks = doc_blocks()
    assert {b.path for b in blocks} >= {"docs/getting-started.md"}
    assert any(b.exit_code == 2 for b in blocks)
    assert any("launch.py" in b.code for b in blocks) and any("resume=" in b.code for b in blocks)


# ------------------------------------------------------------------ the docs' blocks
@pytest.mark.slow
@pytest.mark.parametrize("block", doc_blocks(), ids=lambda b: f"{b.path}:{b.line}")
def test_docs_block_runs(block, tmp_path):
    done = run_block(block, tmp_path)
    assert done.returncode == block.exit_code, (
        f"{block.path}:{block.line} exited {done.returncode}, expected {block.exit_code}\n"
        f"--- commands run\n{shrink(block.code)}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )


# ------------------------------------------------------------------ the configuration reference
def _hook():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "docs" / "hooks" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_config_reference_covers_every_field_of_every_schema():
    import eqmarl.config as config

    hook = _hook()
    schemas = [getattr(config, name) for name in config.__all__ if name.endswith("Config") and name != "ConfigError"]
    sections = {cls for _, _, _, cls in hook.SECTIONS}
    assert {s.__name__ for s in schemas if s is not config.EnvConfig} == sections
    page = hook.render()
    for heading, prefix, module, cls in hook.SECTIONS:
        documented = hook.read_schemas(hook.CONFIG_DIR / f"{module}.py")[cls]
        real = getattr(config, cls)
        assert [f.name for f in documented.fields] == [f.name for f in dataclasses.fields(real)], cls
        for f in documented.fields:
            assert f.doc or f.type.endswith("Config"), f"{cls}.{f.name} has no comment above it"
            assert f"<code>{prefix}{f.name}</code>" in page
        assert f"## {heading}" in page


def test_config_reference_reads_comments_and_shared_comments(tmp_path):
    (tmp_path / "m.py").write_text(
        "from dataclasses import dataclass, field\n\n@dataclass\nclass A:\n"
        '    """Doc."""\n\n    # one | two\n    x: int = 1\n    # shared by y and z\n    y: str = "a"\n'
        "    z: list[int] = field(default_factory=list)\n\n@dataclass\nclass B(A):\n    x: int = 2\n"
    )
    schemas = _hook().read_schemas(tmp_path / "m.py")
    assert [(f.name, f.default, f.doc) for f in schemas["A"].fields] == [
        ("x", "1", "one | two"),
        ("y", '"a"', "shared by y and z"),
        ("z", "[]", "shared by y and z"),
    ]
    assert (schemas["B"].fields[0].default, schemas["B"].fields[0].doc) == ("2", "one | two")
