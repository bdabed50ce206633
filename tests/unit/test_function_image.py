"""A function image's recipe, Dockerfile and content hash, without an engine: what is run
as root and in which order, what the base keeps (user, entrypoint, workdir, environment),
what a custom base gets added, and what makes an image "changed"."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pyhost.errors import ConfigurationError
from pyhost.launchers.docker.function_image import (
    check_recipe,
    content_hash,
    plan_dockerfile,
    requirement_fingerprint,
)
from pyhost.launchers.docker.image import SERVER_ENTRYPOINT
from pyhost.launchers.docker.wheels import SITE_DIR
from pyhost.launchers.images import FUNCTION_DIR, ImageRecipe, parse_step
from tests.support.wheels import make_wheel

TAG = "pyhost/demo/fn:0123456789ab"

# What the engine says of hxpy:latest (a session image) and of a plain Debian base.
SESSION_BASE = {"Id": "sha256:" + "a" * 64, "Config": {
    "User": "1000", "WorkingDir": "/io", "Entrypoint": list(SERVER_ENTRYPOINT),
    "Env": ["PATH=/usr/bin:/bin", "PYTHONPATH=/opt/hxpy", "PYTHONSAFEPATH=1"],
    "Labels": {"org.pyhost.hash": "f" * 64, "org.pyhost.base": "pyhost-base:bookworm"}}}
CUSTOM_BASE = {"Id": "sha256:" + "b" * 64, "Config": {
    "User": "", "WorkingDir": "", "Entrypoint": None, "Cmd": ["bash"],
    "Env": ["PATH=/usr/bin:/bin"], "Labels": None}}


def recipe(**changes: object) -> ImageRecipe:
    base = ImageRecipe(tag=TAG, requirements=("pandas==2.0",),
                       instructions=("echo one > /opt/one", "echo two"),
                       files={"main.py": b"def f():\n    return 1\n"})
    return dataclasses.replace(base, **changes)


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_on_a_session_image_instructions_run_as_root_and_the_base_user_comes_back():
    text = plan_dockerfile(recipe(), SESSION_BASE).render()
    found = lines(text)
    assert found[1] == f"FROM {SESSION_BASE['Id']}"  # the id: a moved base tag is a change
    assert found[2] == "USER root"
    order = [found.index(line) for line in (
        f"COPY site {SITE_DIR}", "RUN echo one > /opt/one", "RUN echo two",
        f"COPY function {FUNCTION_DIR}", "USER 1000")]
    assert order == sorted(order)
    assert f'ENV PYTHONPATH="/opt/hxpy:{SITE_DIR}"' in found
    assert found[-1] == "USER 1000"  # entrypoint, workdir and the server are the base's
    assert "hxpy" not in text.replace("/opt/hxpy:", "")
    assert f"RUN python3 -m compileall -q {SITE_DIR}" in found


def test_without_requirements_the_base_pythonpath_is_kept():
    text = plan_dockerfile(recipe(requirements=()), SESSION_BASE).render()
    assert "PYTHONPATH" not in text and "COPY site" not in text and "compileall" not in text


def test_a_custom_base_gets_the_server_a_user_and_a_workdir():
    found = lines(plan_dockerfile(recipe(), CUSTOM_BASE).render())
    assert "COPY hxpy /opt/hxpy/hxpy" in found
    assert f'ENV PYTHONPATH="/opt/hxpy:{SITE_DIR}"' in found
    assert f"RUN python3 -m compileall -q /opt/hxpy {SITE_DIR}" in found
    assert found[-4:] == ["USER 61000", "WORKDIR /io",
                          'ENTRYPOINT ["python3", "-c", "import hxpy.__main__"]', "CMD []"]


@pytest.mark.parametrize("user, kept", [("root", "61000"), ("0:0", "61000"), ("app", "app"),
                                        ("1000:1000", "1000:1000")])
def test_a_base_running_as_root_drops_to_the_sandbox_uid(user, kept):
    base = {**CUSTOM_BASE, "Config": {**CUSTOM_BASE["Config"], "User": user,
                                      "WorkingDir": "/srv"}}
    plan = plan_dockerfile(recipe(), base)
    assert plan.user == kept and plan.workdir is None  # the base's workdir stays


def test_a_step_line_names_the_instruction_it_runs():
    plan = plan_dockerfile(recipe(), SESSION_BASE)
    assert parse_step("Step 5/9 : RUN echo two") == (5, 9, "RUN echo two")
    assert parse_step(" ---> Running in 1234") is None
    assert plan.instruction_of("RUN echo two") == 2
    assert plan.instruction_of(f"COPY function {FUNCTION_DIR}") is None


@pytest.mark.parametrize("change, message", [
    ({"instructions": ("echo a\necho b",)}, "one line"),
    ({"instructions": ("echo a \\",)}, r"instruction 1 'echo a \\\\' ends with a line continuat"),
    ({"instructions": ("true", "apt-get install -y \\  ")}, "instruction 2 .* continuation"),
    ({"instructions": ("  ",)}, "non-empty"),
    ({"tag": "Pyhost/Demo:1"}, "lower-case"),
    ({"tag": "pyhost/demo"}, "lower-case"),
    ({"requirements": ("pandas\n",)}, "requirement"),
    ({"find_links": ("/no/such/wheels",)}, "no such directory"),
    ({"files": {"../escape.py": b""}}, "relative path"),
])
def test_a_malformed_recipe_is_refused(change, message):
    with pytest.raises(ConfigurationError, match=message):
        check_recipe(recipe(**change))


def test_a_good_recipe_passes(tmp_path):
    check_recipe(recipe(find_links=(str(tmp_path),), instructions=("apt-get install -y git",)))


def test_the_content_hash_changes_with_each_input(tmp_path):
    wheel = make_wheel(tmp_path / "dist")
    first = recipe(requirements=(str(wheel),))
    plan = plan_dockerfile(first, SESSION_BASE)
    digest = content_hash(first, plan, [])
    assert digest == content_hash(first, plan_dockerfile(first, SESSION_BASE), [])
    changed = {
        "instruction": recipe(requirements=(str(wheel),), instructions=("echo three",)),
        "source": recipe(requirements=(str(wheel),), files={"main.py": b"pass\n"}),
        "network": recipe(requirements=(str(wheel),), allow_network=True),
    }
    for what, other in changed.items():
        assert content_hash(other, plan_dockerfile(other, SESSION_BASE), []) != digest, what
    moved = {**SESSION_BASE, "Id": "sha256:" + "c" * 64}
    assert content_hash(first, plan_dockerfile(first, moved), []) != digest
    assert content_hash(first, plan, [("hxpy/__init__.py", b"", False)]) != digest
    make_wheel(tmp_path / "dist", source="VALUE = 43\n")  # same file name, other bytes
    assert content_hash(first, plan, []) != digest


def test_a_wheel_directory_is_fingerprinted_by_its_listing(tmp_path):
    links = tmp_path / "wheels"
    make_wheel(links)
    before = requirement_fingerprint(["pyhost_testpkg"], [str(links)])
    assert before == requirement_fingerprint(["pyhost_testpkg"], [str(links)])
    make_wheel(links, version="2.0")
    assert requirement_fingerprint(["pyhost_testpkg"], [str(links)]) != before


def test_the_session_image_starts_its_server_as_the_launchers_say():
    # Dockerfile.hxpy cannot import the constant: the two must not drift apart.
    dockerfile = Path(__file__).resolve().parents[2] / "Dockerfile.hxpy"
    entrypoints = [line.split(" ", 1)[1] for line in dockerfile.read_text().splitlines()
                   if line.startswith("ENTRYPOINT ")]
    assert [json.loads(entry) for entry in entrypoints] == [list(SERVER_ENTRYPOINT)]
