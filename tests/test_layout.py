"""The package layers import downhill only: core (errors, io, config, results) <- data, render <- models <- engine
<- eval <- reports. Checked on the source (every import statement, also those inside functions), so a lazy import
that runs uphill fails here, not only a top-level one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# module prefix -> its layer; a module may import its own layer and every layer below it
LAYERS = [
    ("gmae.errors", 0), ("gmae.io", 0), ("gmae.config", 0), ("gmae.results", 0), ("gmae", 0),
    ("gmae.data", 1), ("gmae.render", 1),
    ("gmae.models", 2),
    ("gmae.engine", 3),
    ("gmae.cli", 4), ("gmae.__main__", 4),
    ("eval", 5),
    ("reports", 6),
]


def layer_of(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file (``module``: its dotted name, default from the
    path); relative imports are resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = (module or module_name(path)).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from gmae import models` names a submodule
            found += [(node.lineno, f"{name}.{a.name}") for a in node.names if layer_of(f"{name}.{a.name}")
                      not in (None, layer_of(name))]
    return found


def source_files() -> list[Path]:
    return sorted(p for top in ("gmae", "eval", "reports") for p in (ROOT / top).rglob("*.py"))


def test_layer_table_covers_every_module():
    assert all(layer_of(module_name(p)) is not None for p in source_files())


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_downhill(path):
    mine = layer_of(module_name(path))
    imports = imported_modules(path)
    uphill = [f"line {line}: {name} (layer {layer_of(name)})" for line, name in imports
              if layer_of(name) is not None and layer_of(name) > mine]
    # our other top-level folders (benchmarks, tests, scripts, a stray package) are never imported by the library
    uphill += [f"line {line}: {name} (not a library layer)" for line, name in imports
               if layer_of(name) is None and (ROOT / name.split(".")[0]).is_dir()]
    assert not uphill, f"{path.relative_to(ROOT)} (layer {mine}) imports from above: {uphill}"


def test_the_checker_sees_lazy_and_relative_uphill_imports(tmp_path):
    """The check itself: an import inside a function and a relative one are both resolved and found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from eval.command import EvalCommand\n    from ..engine import train\n")
    names = [name for _, name in imported_modules(probe, module="gmae.models.probe")]
    assert names == ["eval.command", "gmae.engine"]
    assert layer_of("eval.command") > layer_of("gmae.models.probe") < layer_of("gmae.engine")
