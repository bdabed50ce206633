"""Dependencies point one way, and the public surface is what it says.

The wings, lowest first (a module may import its own layer and those below)::

    hxpy  <-  errors  <-  launchers, launchers.base, launchers.images, launchers.ownership
          <-  session.*  <-  launchers.process, launchers.docker.*  <-  api  <-  runtime.*
          <-  console.*  <-  cli, pyhost

hxpy never imports pyhost or docker; only launchers.docker (with its swarm package: Swarm is the
Docker engine's own cluster mode) imports docker (or requests); no
module imports itself back through others, in pyhost or in hxpy (one edge allowed, see
:data:`ALLOWED_CYCLE_EDGES`). Imports inside functions count: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import hxpy
import pyhost

ROOT = Path(pyhost.__file__).parent
HXPY_ROOT = Path(hxpy.__file__).parent
# The DigitalHub shim is a top-level package of its own (``digitalhub_runtime_python``) that
# only a handler's sys.path holds: not an hxpy module (tests/unit/test_dh_shim.py covers it).
SHIM_DIR = HXPY_ROOT / "runtime" / "shims"


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "hxpy":
        return 0
    name = ".".join(parts[1:])
    if name == "errors":
        return 1
    if name in ("launchers", "launchers.base", "launchers.images", "launchers.ownership"):
        return 2
    if name.startswith("session"):
        return 3
    if name == "launchers.process" or name.startswith("launchers.docker"):
        return 4
    if name == "api":
        return 5
    if name.startswith("runtime"):
        return 6
    if name.startswith("console"):
        return 7
    return 8  # cli, __main__, the package itself


def _modules() -> dict[str, Path]:
    """Every module of pyhost and of hxpy (the in-container package), by dotted name."""
    found = {}
    for root in (ROOT, HXPY_ROOT):
        for path in root.rglob("*.py"):
            if path.is_relative_to(SHIM_DIR):
                continue
            parts = list(path.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, but those under ``if TYPE_CHECKING:`` (type-only imports run never)."""
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _imports(module: str, path: Path) -> set[str]:
    """Every pyhost/hxpy/third-party module ``module`` imports, anywhere in its body (type
    checking aside)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            # "from . import registry" imports a module, not a name
            names.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in MODULES)
    return names


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    mine = _layer(module)
    upward = sorted(target for target in GRAPH[module]
                    if target.split(".")[0] == "pyhost" and target in MODULES
                    and _layer(target) > mine)
    assert not upward, f"{module} (layer {mine}) imports from above: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] == "hxpy"))
def test_hxpy_imports_nothing_of_pyhost_or_docker(module):
    roots = {target.split(".")[0] for target in GRAPH[module]}
    assert not roots & {"pyhost", "docker", "requests"}, \
        f"{module} imports {sorted(roots & {'pyhost', 'docker', 'requests'})}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_docker_wing_imports_docker(module):
    third = {target.split(".")[0] for target in GRAPH[module]}
    if module.startswith("pyhost.launchers.docker"):
        return
    assert not third & {"docker", "requests"}, f"{module} imports docker"


# The one edge of a cycle allowed: hxpy.codec imports its Haystack ext table (hxpy.exttypes)
# the first time a value needs it, so that ``import hxpy.codec`` gives a complete codec to
# every user (and a cold server with plain values skips the import), and exttypes registers
# its encoders with the registry codec defines. Untying it would mean splitting codec in two
# modules that share its private per-thread state (the packers and out-of-band buffers that
# the registry's hooks, the payload packing the ext encoders call and encode() all use): a
# worse knot than this one edge.
ALLOWED_CYCLE_EDGES = {("hxpy.codec", "hxpy.exttypes")}


def test_the_allowed_cycle_edge_is_still_there():
    # When the edge goes, its allowance must go too, or it would hide a new cycle.
    for module, target in ALLOWED_CYCLE_EDGES:
        assert target in GRAPH[module], f"{module} no longer imports {target}: " \
                                        "remove the pair from ALLOWED_CYCLE_EDGES"


def test_no_import_cycles():
    edges = {module: {t for t in targets if t in MODULES and t != module
                      and (module, t) not in ALLOWED_CYCLE_EDGES}
             for module, targets in GRAPH.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of dependencies.
    for module in edges:
        edges[module] = {t for t in edges[module] if not module.startswith(t + ".")}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_the_layering_test_sees_a_violation():
    # Guard against a test that cannot fail: the parser must see a relative import upward.
    assert "pyhost.api" not in GRAPH["pyhost.session.blocking"]
    assert "pyhost.launchers.base" in GRAPH["pyhost.session.blocking"]
    assert _layer("pyhost.api") > _layer("pyhost.session.aio")
    # ... and resolve hxpy's two-level relative imports ("from .. import codec")
    assert "hxpy.codec" in GRAPH["hxpy.runtime.job"]
    assert _layer("hxpy.runtime.serve") == 0


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["hxpy", "hxpy.codec", "hxpy.wire", "hxpy.server",
                                    "hxpy.protocol", "hxpy.runtime", "hxpy.runtime.job",
                                    "hxpy.runtime.serve"])
def test_hxpy_imports_neither_pyhost_nor_docker(module):
    loaded = _modules_after(f"import {module}")
    assert not {m for m in loaded if m.split(".")[0] in ("pyhost", "docker", "requests")}


def test_the_server_starts_without_numpy_or_pandas():
    loaded = _modules_after("import hxpy.server")
    assert "numpy" not in loaded and "pandas" not in loaded


@pytest.mark.parametrize("statement", ["import pyhost.session",
                                       "from pyhost import py; py(launcher='process')"])
def test_sessions_run_without_docker(statement):
    loaded = _modules_after(statement)
    assert not {m for m in loaded if m.split(".")[0] == "docker"}


def test_error_tree():
    names = [name for name in pyhost.errors.__all__
             if isinstance(getattr(pyhost.errors, name), type)
             and issubclass(getattr(pyhost.errors, name), BaseException)]
    assert "ConfigurationError" in names and len(names) >= 14
    for name in names:
        assert issubclass(getattr(pyhost.errors, name), pyhost.PyHostError)
        assert re.search(rf"\b{name}\b", pyhost.errors.__doc__), \
            f"{name} is missing from the drawn tree"
    assert issubclass(pyhost.SessionTimeout, TimeoutError)
    assert issubclass(pyhost.ConfigurationError, ValueError)
    assert not issubclass(pyhost.SessionClosed, pyhost.SessionDied)


def test_no_bare_pyhost_error_is_raised():
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                assert not (isinstance(func, ast.Name) and func.id == "PyHostError"), \
                    f"{module}:{node.lineno} raises a bare PyHostError"


def test_the_package_exports_exactly_its_public_names():
    public = {name for name in dir(pyhost) if not name.startswith("_")
              and not isinstance(getattr(pyhost, name), types.ModuleType)}
    assert set(pyhost.__all__) == public


@pytest.mark.parametrize("module", sorted(m for m in MODULES
                                    if m != "pyhost" and not m.endswith("__main__")))
def test_each_module_exports_what_it_defines(module):
    loaded = importlib.import_module(module)
    exported = set(getattr(loaded, "__all__", ()))
    for name in exported:
        assert hasattr(loaded, name), f"{module}.__all__ names {name}, which is not there"
    defined = {name for name, value in vars(loaded).items()
               if not name.startswith("_") and (inspect.isclass(value) or
                                                inspect.isfunction(value))
               and value.__module__ == module}
    missing = defined - exported
    assert not missing, f"{module} defines public {sorted(missing)} but leaves them out of " \
                        "__all__ (export them, or name them with a leading underscore)"


def test_every_module_is_seen():
    walked = {info.name for info in pkgutil.walk_packages([str(ROOT)], "pyhost.")}
    walked |= {info.name for info in pkgutil.walk_packages([str(HXPY_ROOT)], "hxpy.")}
    assert walked <= set(MODULES)
    assert "hxpy.server" in MODULES and "hxpy.runtime.job" in MODULES


def test_no_launcher_name_is_compared_outside_the_launchers():
    # What a launcher can do is asked of it (check(), describe_image(), ...), never
    # decided by its name: a new launcher must not have to edit the runtime.
    names = {"docker", "swarm", "process"}
    found = []
    for module, path in MODULES.items():
        if module.startswith("pyhost.launchers") or not module.startswith("pyhost"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
                literals = {v.value for v in values if isinstance(v, ast.Constant)}
                for value in values:
                    if isinstance(value, (ast.Tuple, ast.List, ast.Set)):
                        literals |= {e.value for e in value.elts if isinstance(e, ast.Constant)}
                if literals & names:
                    found.append(f"{module}:{node.lineno}")
    assert not found, f"launcher names compared: {found}"
