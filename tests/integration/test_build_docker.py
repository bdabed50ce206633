"""The build task on the real engine: a function image with a local-wheel requirement and
an instruction, then a job on it; an unchanged build is a no-op; a failing step names the
instruction and its output; a requirement with no wheel fails before any engine build; a
base with no python3 is a clear error. Every image made here is removed by its tag."""

from __future__ import annotations

import os
import time

import pytest

import pyhost.runtime as dh
from pyhost.launchers.docker.image import BUILD_LABEL, PYTHON_LABEL, SERVER_ENTRYPOINT
from pyhost.launchers.ownership import LABEL_PREFIX, SUPERVISOR_LABEL
from tests.integration.test_runtime_docker import containers_removed_soon_after  # noqa: F401
from tests.support.wheels import make_wheel

MAIN = """\
def uses_the_package(x):
    import pyhost_testpkg
    with open("/opt/marker") as marker:
        return pyhost_testpkg.VALUE + x, marker.read().strip()


def plain():
    return 1


def package_value():
    import pyhost_testpkg
    return pyhost_testpkg.VALUE
"""


@pytest.fixture
def project(tmp_path, client, monkeypatch):
    monkeypatch.setenv("PYHOST_CACHE", str(tmp_path / "cache"))  # a wheelhouse of its own
    dh.configure(tmp_path / "home")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text(MAIN)
    return dh.get_or_create_project(f"build-{tmp_path.name[-20:].lower()}")


def _function(project, tmp_path, handler, **fields):
    return project.new_function(name=handler.replace("_", "-"), kind="python",
                                code_src=str(tmp_path / "src" / "main.py"), handler=handler,
                                **fields)


def test_a_built_image_carries_the_wheel_and_the_instruction_and_jobs_run_on_it(
        project, tmp_path, client, images):
    wheel = make_wheel(tmp_path / "dist")
    fn = _function(project, tmp_path, "uses_the_package", requirements=[str(wheel)])
    build = fn.run(action="build", instructions=["echo built > /opt/marker"], wait=True,
                   offline=True, progress=False)
    images.append(build.status.image or "")
    assert build.status.state == "COMPLETED", build.status.error
    assert build.spec["function_id"] == fn.id and "python+build" in build.key
    assert build.status.built is True and build.status.packages == ["pyhost_testpkg==1.0"]
    assert build.status.image == f"pyhost/{project.name}/uses-the-package:{fn.id[:12]}"
    attrs = client.api.inspect_image(build.status.image)
    assert attrs["Id"] == build.status.image_id
    assert attrs["Config"]["User"] == "61000"  # dropped back after the root steps
    assert attrs["Config"]["Entrypoint"] == list(SERVER_ENTRYPOINT)
    assert attrs["Config"]["Labels"][PYTHON_LABEL] == "3.11"
    assert "Step" in build.logs() and "echo built > /opt/marker" in build.logs()

    # The version is the same (recording the image made none), and its jobs use the image.
    again = _function(project, tmp_path, "uses_the_package", requirements=[str(wheel)])
    assert again.id == fn.id
    job = again.run(parameters={"x": 1}, wait=True)
    assert job.status.state == "COMPLETED", job.status.error
    assert job.result("result") == [43, "built"]
    assert job.spec["image"] == build.status.image

    # Unchanged: no engine build, the same image, well under a second.
    started = time.perf_counter()
    noop = fn.run(action="build", instructions=["echo built > /opt/marker"], wait=True,
                  offline=True, progress=False)
    elapsed = time.perf_counter() - started
    assert noop.status.state == "COMPLETED", noop.status.error
    assert noop.status.built is False and noop.status.image_id == build.status.image_id
    assert "nothing to build" in noop.logs() and "Step" not in noop.logs()
    assert elapsed < 1.0, f"an unchanged build took {elapsed:.2f} s"

    # A changed instruction is a new build of the same tag.
    changed = fn.run(action="build", instructions=["echo again > /opt/marker"], wait=True,
                     offline=True, progress=False)
    assert changed.status.state == "COMPLETED", changed.status.error
    assert changed.status.built is True and changed.status.image_id != build.status.image_id
    assert client.api.inspect_image(changed.status.image_id)["Config"]["Labels"][
        BUILD_LABEL] == changed.status.content_hash


def test_a_build_nobody_waits_for_goes_on_in_a_supervisor_of_its_own(project, tmp_path,
                                                                      images):
    fn = _function(project, tmp_path, "plain")
    run = fn.run(action="build", instructions=["echo detached > /opt/marker"])
    owner = run.refresh().metadata["owner"]
    assert owner[SUPERVISOR_LABEL] == "1" and owner[f"{LABEL_PREFIX}.owner.pid"] != str(os.getpid())
    done = run.wait(600)
    images.append(done.status.image or "")
    assert done.status.state == "COMPLETED", done.status.error
    assert done.status.built is True and "echo detached > /opt/marker" in done.logs()


def test_a_detached_build_is_stopped_by_another_process_at_its_next_line(project, tmp_path,
                                                                         images):
    fn = _function(project, tmp_path, "plain")
    run = fn.run(action="build", instructions=[
        "for i in $(seq 600); do echo tick $i; sleep 0.1; done"])
    deadline = time.monotonic() + 120
    while "tick 3" not in run.logs():  # the slow step has begun
        assert time.monotonic() < deadline and run.refresh().status.state in ("READY",
                                                                               "RUNNING")
        time.sleep(0.1)
    stopped = dh.get_run(run.id).stop()
    assert stopped.status.state == "STOPPED"
    assert "tick 600" not in stopped.logs() and "build was abandoned" in stopped.logs()


def test_a_failing_step_names_the_instruction_and_its_output(project, tmp_path, images):
    fn = _function(project, tmp_path, "plain")
    run = fn.run(action="build", wait=True, progress=False,
                 instructions=["echo fine", "echo this-went-wrong >&2 && exit 3"])
    images.append(run.spec["image"])
    assert run.status.state == "ERROR"
    message = run.status.error["message"]
    assert "instruction 2 of 2, 'echo this-went-wrong >&2 && exit 3', exited with code 3" \
        in message
    assert message.split("its output:\n", 1)[1] == "this-went-wrong"
    assert "this-went-wrong" in run.logs()
    assert fn.built_image() is None


def test_an_instruction_has_no_network_unless_allowed(project, tmp_path, images):
    fn = _function(project, tmp_path, "plain")
    only_loopback = 'test "$(ls /sys/class/net)" = lo'
    run = fn.run(action="build", wait=True, progress=False, instructions=[only_loopback])
    images.append(run.spec["image"])
    assert run.status.state == "COMPLETED", run.status.error
    # Another command (a cached step would not run again), the same test.
    run = fn.run(action="build", wait=True, progress=False, allow_network=True,
                 instructions=[only_loopback + "  # with a network"])
    assert run.status.state == "ERROR"  # an interface beside lo: the build had a network
    assert "exited with code 1" in run.status.error["message"]


def test_a_requirement_with_no_wheel_fails_before_any_engine_build(project, tmp_path, client,
                                                                   images):
    fn = _function(project, tmp_path, "plain", requirements=["pyhost-no-such-package==9"])
    run = fn.run(action="build", wait=True, offline=True, progress=False)
    images.append(run.spec["image"])
    assert run.status.state == "ERROR"
    assert "pyhost-no-such-package==9" in run.status.error["message"]
    assert "Step" not in run.logs()
    assert client.api.images(name=run.spec["image"]) == []


def test_a_custom_base_gets_the_server(project, tmp_path, client, images):
    """pyhost-base:bookworm has python3, numpy, pandas and msgpack but no hxpy."""
    if not client.api.images(name="pyhost-base:bookworm"):
        pytest.fail("the session image's Debian base pyhost-base:bookworm is not present")
    fn = _function(project, tmp_path, "plain", base_image="pyhost-base:bookworm")
    run = fn.run(action="build", wait=True, progress=False)
    images.append(run.spec["image"])
    assert run.status.state == "COMPLETED", run.status.error
    attrs = client.api.inspect_image(run.status.image)["Config"]
    assert attrs["Entrypoint"] == list(SERVER_ENTRYPOINT) and attrs["User"] == "61000"
    job = fn.run(wait=True)
    assert job.status.state == "COMPLETED", job.status.error
    assert job.result("result") == 1


def test_a_base_without_python3_is_a_clear_error(project, tmp_path, client, images):
    import io
    import tarfile

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY empty /empty\n"),
                           ("empty", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    tag = f"pyhost/test-no-python:{tmp_path.name[-12:].lower()}"
    images.append(tag)
    for _ in client.api.build(fileobj=context, custom_context=True, tag=tag, decode=True):
        pass
    fn = _function(project, tmp_path, "plain", base_image=tag)
    run = fn.run(action="build", wait=True, progress=False)
    images.append(run.spec["image"])
    assert run.status.state == "ERROR"
    assert "cannot run python3" in run.status.error["message"]
    assert "must provide python3 with numpy, pandas and msgpack" in run.status.error["message"]


def test_pyhost_build_prints_the_image_and_fails_on_error(project, tmp_path, images):
    import os
    import subprocess
    import sys

    wheel = make_wheel(tmp_path / "dist")
    env = {**os.environ, "PYHOST_HOME": str(tmp_path / "home"),
           "PYHOST_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    command = [sys.executable, "-m", "pyhost", "build", "main.py:plain", "--project", "cli",
               "--requirements", str(wheel), "--offline"]
    done = subprocess.run([*command, "--instruction", "echo ok"], cwd=tmp_path / "src",
                          env=env, capture_output=True, text=True, timeout=300)
    image = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("image ")]
    images.extend(image)
    assert done.returncode == 0, done.stderr
    assert image and image[0].startswith("pyhost/cli/plain:") and "COMPLETED" in done.stdout
    failed = subprocess.run([*command, "--instruction", "exit 5"], cwd=tmp_path / "src",
                            env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    assert "instruction 1 of 1, 'exit 5', exited with code 5" in failed.stderr


def test_pyhost_run_with_a_requirement_builds_the_image_then_runs_on_it(project, tmp_path,
                                                                         images):
    import json
    import os
    import subprocess
    import sys

    wheel = make_wheel(tmp_path / "dist")
    env = {**os.environ, "PYHOST_HOME": str(tmp_path / "home"),
           "PYHOST_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    done = subprocess.run([sys.executable, "-m", "pyhost", "run", "main.py:package_value",
                           "--project", "cli", "--requirement", str(wheel), "--json"],
                          cwd=tmp_path / "src", env=env, capture_output=True, text=True,
                          timeout=300)
    document = json.loads(done.stdout)  # the run's document alone: the build's lines on stderr
    images.append(document["spec"]["image"])
    assert done.returncode == 0, done.stderr
    assert document["status"]["state"] == "COMPLETED"
    assert document["status"]["results"]["output_0"] == 42
    assert document["spec"]["image"].startswith("pyhost/cli/package")
    assert "Step" in done.stderr  # the build's progress
