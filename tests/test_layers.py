"""Imports point down the layers of ``src/eqmarl`` (docs/architecture.md), in no circle.

Every ``import``/``from ... import`` statement of the package's own modules, at any
depth (function-level lazy imports and ``TYPE_CHECKING`` blocks included), is checked:
a module may import from its own layer or a lower one, never from a higher one; and no
chain of such imports leads from a module back to itself (two modules that import each
other, lazily or not, are a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top.  A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("interface", ("eqmarl.core",)),
    ("symmetry", ("eqmarl.symmetry",)),
    ("envs", ("eqmarl.envs",)),
    ("models", ("eqmarl.models",)),
    ("wrappers", ("eqmarl.wrappers",)),
    ("config", ("eqmarl.config", "eqmarl.build")),
    ("algos", ("eqmarl.algos",)),
    ("train", ("eqmarl.train", "eqmarl.train.logger")),
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


def import_graph(root: Path) -> dict[str, set[str]]:
    """``module -> the package modules it imports`` (statements at any depth).

    ``from eqmarl.x import name`` is an edge to ``eqmarl.x`` (its ``__init__`` for a
    package), and to ``eqmarl.x.name`` where that is a module.  A module's own parent
    packages, which Python runs first, are not edges: only statements are.
    """
    graph: dict[str, set[str]] = {}
    for path in sorted((root / "eqmarl").rglob("*.py")):
        module = module_name(path, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = {t for _, t in imported_modules(tree, module, path.name == "__init__.py")}
        graph[module] = {t for t in targets if t != module}
    return graph


def import_cycles(root: Path) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    graph = import_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:  # a name that is no module of the package here
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycle() -> None:
    cycles = import_cycles(SRC)
    assert not cycles, "modules that import each other (directly or through others):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_a_cycle_is_caught(tmp_path: Path) -> None:
    """The check can fail: a lazy import back from a lower module closes a cycle."""
    import shutil

    shutil.copytree(SRC / "eqmarl", tmp_path / "eqmarl")
    target = tmp_path / "eqmarl" / "models" / "heads.py"
    target.write_text(target.read_text() + "\n\ndef _oops() -> None:\n    from eqmarl.models.policy import Policy\n")
    cycles = import_cycles(tmp_path)
    assert any({"eqmarl.models.heads", "eqmarl.models.policy"} <= set(c) for c in cycles), cycles


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
        ("eqmarl.core.env", "interface"),
        ("eqmarl.envs.mpe", "envs"),
        ("eqmarl.cli", "launch"),
        ("eqmarl.train.rundir", "train"),
        ("eqmarl.train.resume", "train"),
        ("eqmarl.launch.callbacks", "launch"),
        ("eqmarl.config.train", "config"),
        ("eqmarl.config.checks", "config"),
    ],
)
def test_layer_of(module: str, layer: str) -> None:
    assert LAYERS[layer_of(module)][0] == layer


# packages where a long function must say why it is long (issue 17: the trainer and the
# config read as named phases); the reason is a ``# long: ...`` comment on its first line
SHORT_FUNCTION_PACKAGES = ("train", "config")
MAX_FUNCTION_LINES = 60


def long_functions(root: Path) -> list[str]:
    """``path:line name (N lines)`` of every function over the limit without a ``# long:`` reason."""
    out = []
    for package in SHORT_FUNCTION_PACKAGES:
        for path in sorted((root / "eqmarl" / package).rglob("*.py")):
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse("\n".join(lines))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES and "# long:" not in lines[node.lineno - 1]:
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_train_and_config_functions_are_short() -> None:
    bad = long_functions(SRC)
    assert not bad, f"functions over {MAX_FUNCTION_LINES} lines without a '# long: <reason>':\n" + "\n".join(bad)


def test_a_long_function_is_caught(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(SRC / "eqmarl", tmp_path / "eqmarl")
    body = "".join(f"    x{i} = {i}\n" for i in range(70))
    (tmp_path / "eqmarl" / "train" / "oops.py").write_text(f"def oops() -> None:\n{body}")
    (tmp_path / "eqmarl" / "config" / "fine.py").write_text(f"def fine() -> None:  # long: a table\n{body}")
    assert [b.split()[1] for b in long_functions(tmp_path)] == ["oops"]
