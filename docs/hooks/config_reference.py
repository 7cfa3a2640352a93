"""MkDocs hook: the configuration reference, generated from ``src/eqmarl/config/``.

Every config key is a field of a dataclass in ``src/eqmarl/config/`` with the ``#``
comment lines right above it as its documentation (fields that follow each other without
a comment of their own share the comment above the first of them).  This hook reads
those modules with :mod:`ast` (nothing is imported) and replaces the line
``<!-- config-reference -->`` of a page with one table per config group, so the
reference is written once, in the code.  ``tests/test_docs_commands.py`` checks that
every field of every schema appears, with a description.
"""

from __future__ import annotations

import ast
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "<!-- config-reference -->"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "src" / "eqmarl" / "config"

# (heading, key prefix, module, class): the run's own keys first, then one section per group
SECTIONS = [
    ("The run", "", "run", "Config"),
    ("env=mpe", "env.", "env", "MpeEnvConfig"),
    ("env=smacv2, env=smax", "env.", "env", "Smacv2EnvConfig"),
    ("env=hanabi", "env.", "env", "HanabiEnvConfig"),
    ("env=lever", "env.", "env", "LeverEnvConfig"),
    ("model", "model.", "model", "ModelConfig"),
    ("algo", "algo.", "algo", "AlgoConfig"),
    ("train", "train.", "train", "TrainConfig"),
    ("logger", "logger.", "logger", "LoggerConfig"),
    ("learner", "learner.", "learner", "LearnerConfig"),
    ("cluster", "cluster.", "cluster", "ClusterConfig"),
    ("container", "container.", "container", "ContainerConfig"),
]


@dataclass
class Field:
    """One dataclass field: its name, annotation, default (source text) and comment."""

    name: str
    type: str
    default: str
    doc: str


@dataclass
class Schema:
    """One config dataclass: its name, docstring, base classes and fields (inherited first)."""

    name: str
    doc: str
    bases: list[str]
    fields: list[Field]


def _default(source: str, value: ast.expr | None) -> str:
    if value is None:
        return "required"
    if isinstance(value, ast.Name) and value.id == "MISSING":
        return "required"
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
        for kw in value.keywords:
            if kw.arg == "default_factory":
                factory = kw.value
                if isinstance(factory, ast.Lambda):
                    return ast.get_source_segment(source, factory.body) or ""
                name = getattr(factory, "id", "")
                return {"list": "[]", "dict": "{}"}.get(name, f"{name}()")
    return ast.get_source_segment(source, value) or ""


def _comment_above(lines: list[str], lineno: int, field_lines: set[int]) -> str:
    """The ``#`` lines right above line ``lineno`` (1-based), skipping fields that share them."""
    i = lineno - 2
    while i >= 0 and (i + 1) in field_lines and not lines[i].strip().startswith("#"):
        i -= 1  # a field without its own comment shares the one above the previous field
    comment: list[str] = []
    while i >= 0 and lines[i].strip().startswith("#"):
        comment.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    return " ".join(comment)


def read_schemas(path: Path) -> dict[str, Schema]:
    """Every ``@dataclass`` class of one module, with its fields and their comments.

    Args:
        path: a module of ``src/eqmarl/config/``.

    Returns:
        class name -> :class:`Schema`; a subclass's fields include its bases' (from the same
        module), overridden in place by its own.
    """
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    schemas: dict[str, Schema] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        if not any(getattr(d, "id", None) == "dataclass" for d in node.decorator_list):
            continue
        assigns = [s for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
        field_lines = {s.lineno for s in assigns}
        own = [
            Field(
                name=s.target.id,  # type: ignore[union-attr]
                type=ast.get_source_segment(source, s.annotation) or "",
                default=_default(source, s.value),
                doc=_comment_above(lines, s.lineno, field_lines),
            )
            for s in assigns
        ]
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        fields: list[Field] = []
        for base in bases:
            if base in schemas:
                fields.extend(schemas[base].fields)
        for f in own:
            inherited = next((i for i, g in enumerate(fields) if g.name == f.name), None)
            if inherited is None:
                fields.append(f)
            else:  # an override keeps the base's comment when it has none of its own
                fields[inherited] = Field(f.name, f.type, f.default, f.doc or fields[inherited].doc)
        schemas[node.name] = Schema(node.name, ast.get_docstring(node) or "", bases, fields)
    return schemas


def _cell(text: str) -> str:
    """Comment text as one Markdown table cell: code spans kept, prose escaped, pipes escaped."""
    parts = text.replace("``", "`").split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: the rest is prose
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append("`" + part + "`")
            continue
        prose = html.escape(part, quote=False)
        for ch in ("\\", "*", "_", "`"):
            prose = prose.replace(ch, "\\" + ch)
        out.append(prose)
    return "".join(out).replace("|", "\\|")


def _code(text: str) -> str:
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;") + "</code>"


def render(config_dir: Path = CONFIG_DIR) -> str:
    """The reference as Markdown: one section per config group, one table row per key."""
    modules: dict[str, dict[str, Schema]] = {}
    out: list[str] = []
    for heading, prefix, module, cls in SECTIONS:
        if module not in modules:
            modules[module] = read_schemas(config_dir / f"{module}.py")
        schema = modules[module][cls]
        out += [f"## {heading}", "", f"`{cls}` in `src/eqmarl/config/{module}.py`. {_cell(schema.doc)}", ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for f in schema.fields:
            doc = f.doc
            if not doc and f.type.endswith("Config"):
                doc = f"the `{f.name}=` group (its section below)"
            out.append(f"| {_code(prefix + f.name)} | {_code(f.type)} | {_code(f.default)} | {_cell(doc)} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: put the generated reference where a page has the marker."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())


# Sphinx roles in the package's docstrings (:class:`X`), as mkdocstrings renders them
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc):(?=<code>)")


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: drop the Sphinx role prefixes that docstrings rendered by mkdocstrings keep."""
    return _ROLE.sub("", html_text)
