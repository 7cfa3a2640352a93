"""Imports point down the layers of ``src/eqmarl`` (docs/architecture.md).

Every ``import``/``from ... import`` statement of the package's own modules, at any
depth (function-level lazy imports and ``TYPE_CHECKING`` blocks included), is checked:
a module may import from its own layer or a lower one, never from a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top.  A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("interface", ("eqmarl.envs.base", "eqmarl.envs.graph", "eqmarl.envs.knn")),
    ("symmetry", ("eqmarl.symmetry",)),
    ("envs", ("eqmarl.envs",)),
    ("models", ("eqmarl.models",)),
    ("wrappers", ("eqmarl.wrappers",)),
    ("config", ("eqmarl.config", "eqmarl.build")),
    ("algos", ("eqmarl.algos",)),
    ("train", ("eqmarl.train", "eqmarl.logging")),
    ("eval", ("eqmarl.eval",)),
    ("launch", ("eqmarl.launch", "eqmarl.cli", "eqmarl.doctor", "eqmarl.install_sc2")),
]
# the package root (``eqmarl/__init__.py``) sits on top; it is matched exactly, so a new
# top-level module must be given a layer above
ROOT_LAYER = len(LAYERS) - 1


def layer_of(module: str) -> int:
    """Index of ``module``'s layer (longest matching prefix)."""
    best, best_len = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best < 0 and module == "eqmarl":
        return ROOT_LAYER
    if best < 0:
        raise KeyError(f"{module} is in no layer; add it to LAYERS and docs/architecture.md")
    return best


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` of every eqmarl module imported anywhere in ``tree``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # ``from eqmarl.x import y`` may name a submodule y
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names if _is_module(f"{target}.{a.name}")]
    return [(line, m) for line, m in out if m == "eqmarl" or m.startswith("eqmarl.")]


def _is_module(name: str) -> bool:
    p = SRC.joinpath(*name.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def upward_imports(root: Path) -> list[str]:
    """Every import in the package under ``root`` that points to a higher layer."""
    bad = []
    for path in sorted((root / "eqmarl").rglob("*.py")):
        module = module_name(path, root)
        here = layer_of(module)
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target in imported_modules(tree, module, path.name == "__init__.py"):
            there = layer_of(target)
            if there > here:
                bad.append(
                    f"{path.relative_to(root)}:{line}: {module} ({LAYERS[here][0]}) imports {target} "
                    f"({LAYERS[there][0]})"
                )
    return bad


def test_imports_point_down() -> None:
    bad = upward_imports(SRC)
    assert not bad, "imports that point up the layers:\n" + "\n".join(bad)


def test_every_module_has_a_layer() -> None:
    for path in (SRC / "eqmarl").rglob("*.py"):
        layer_of(module_name(path, SRC))
    with pytest.raises(KeyError, match=r"eqmarl\.newthing is in no layer"):
        layer_of("eqmarl.newthing")


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The check can fail: a copy of the package with one upward import is reported."""
    import shutil

    shutil.copytree(SRC / "eqmarl", tmp_path / "eqmarl")
    target = tmp_path / "eqmarl" / "models" / "mlp.py"
    target.write_text(target.read_text() + "\n\ndef _oops() -> None:\n    from eqmarl.train.trainer import Trainer\n")
    bad = upward_imports(tmp_path)
    assert len(bad) == 1 and "eqmarl.models.mlp (models) imports eqmarl.train.trainer (train)" in bad[0]


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("eqmarl.envs.base", "interface"),
        ("eqmarl.envs.mpe", "envs"),
        ("eqmarl.cli", "launch"),
        ("eqmarl.train.rundir", "train"),
        ("eqmarl.train.resume", "train"),
        ("eqmarl.launch.callbacks", "launch"),
    ],
)
def test_layer_of(module: str, layer: str) -> None:
    assert LAYERS[layer_of(module)][0] == layer
