"""Session options: immutable all through, so ``py()`` calls asking for the same options
share one object (checked, specced and keyed once), and nothing about that shows."""

from __future__ import annotations

import pytest

from pyhost import py
from pyhost.errors import ConfigurationError
from pyhost.session.options import SessionOptions


def test_the_same_options_are_one_object_and_others_are_not():
    assert py().options is py().options
    assert py(io=None, env={"A": "1"}).options is py(env={"A": "1"}, io=None).options
    assert py(env={"A": "1"}).options is not py(env={"A": "2"}).options
    assert py(timeout=1).options is not py(timeout=1.0).options  # equal, not the same


def test_a_shared_value_refused_is_refused_every_time():
    assert py(cpus=1).options.cpus == 1
    for bad in (True, 0, -1):  # True == 1, yet refused: the type is part of the key
        with pytest.raises(ConfigurationError, match="cpus must be positive"):
            py(cpus=bad)
    with pytest.raises(ConfigurationError, match="names and values must be str"):
        py(env={"A": 1})
    with pytest.raises(ConfigurationError, match="unknown session option"):
        py(bogus=1)


def test_options_cannot_be_changed_in_place():
    options = py(env={"A": "1"}, node_selector={"disk": "ssd"}, launcher="swarm").options
    for mapping in (options.env, options.node_selector, options.affinity, options.secrets):
        with pytest.raises(TypeError):
            mapping["B"] = "2"  # type: ignore[index]
    assert py(env={"A": "1"}).options.env == {"A": "1"}
    assert options.replace(env={"B": "2"}).env == {"B": "2"}


def test_the_default_io_in_a_pool_key_follows_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = SessionOptions.from_kwargs().pool_key()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    second = SessionOptions.from_kwargs().pool_key()
    assert first[-1] == str(tmp_path / "io") and second[-1] == str(tmp_path / "elsewhere" / "io")
    assert first[:-1] == second[:-1]
