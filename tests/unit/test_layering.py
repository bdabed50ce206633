"""Dependencies point one way: hxpy never imports pyhost or docker; the session never
imports docker; the error tree and public names are what the docs promise."""

import subprocess
import sys

import pytest

import pyhost


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["hxpy", "hxpy.codec", "hxpy.wire", "hxpy.server",
                                    "hxpy.protocol"])
def test_hxpy_imports_neither_pyhost_nor_docker(module):
    loaded = _modules_after(f"import {module}")
    assert not {m for m in loaded if m.split(".")[0] in ("pyhost", "docker", "requests")}


def test_the_server_starts_without_numpy_or_pandas():
    loaded = _modules_after("import hxpy.server")
    assert "numpy" not in loaded and "pandas" not in loaded


def test_the_session_does_not_import_docker():
    loaded = _modules_after("import pyhost.session")
    assert not {m for m in loaded if m.split(".")[0] == "docker"}


def test_error_tree():
    for name in ("PythonError", "MarshalError", "SessionTimeout", "SessionClosed",
                 "SessionDied", "ProtocolError", "EngineUnavailable", "ImageNotFound"):
        assert issubclass(getattr(pyhost, name), pyhost.PyHostError)
    assert issubclass(pyhost.SessionTimeout, TimeoutError)
    assert not issubclass(pyhost.SessionClosed, pyhost.SessionDied)


def test_all_names_exist():
    for name in pyhost.__all__:
        assert hasattr(pyhost, name), name
