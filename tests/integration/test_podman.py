"""pyhost on Podman's Docker-compatible API, as users run it: ``podman system service`` on a
private socket, ``DOCKER_HOST`` pointing at it.

The module starts one service with a storage root, run root, network configuration and
socket of its own (one temporary directory; nothing of the machine's own Podman set-up or of
the shared Docker engine is touched), builds the session image on it once with ``pyhost
image build``, and runs the design's example, ``/io``, the sandbox, a job and a serve there.
Podman's own default ulimits are left in place: pyhost must cope with them. Each scenario
runs in a child process whose only engine is Podman (this process's SDK client is the shared
engine's). The service is stopped and its storage removed at the end.

Podman comes from ``make podman`` (a prerequisite of ``make test``): without it these tests
fail, they never skip.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from pyhost.launchers.docker.client import inspect_image
from pyhost.launchers.docker.debian_base import (
    DEFAULT_SUITE,
    PACKAGES_LABEL,
    base_packages,
    base_tag,
    import_rootfs,
)
from pyhost.launchers.docker.image import image_labels

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SERVING = ROOT / "tests" / "support" / "serving" / "main.py"
FUNCTIONS = ROOT / "tests" / "support" / "functions" / "main.py"
_START_TIMEOUT = 60.0
_BUILD_TIMEOUT = 3600.0


@dataclass
class Podman:
    """A private Podman service: its directory, socket URL and the environment that points
    pyhost (and the podman CLI) at it."""

    home: Path
    url: str
    env: dict[str, str]
    client: docker.DockerClient

    def run(self, script: str, timeout: float = 300.0) -> dict:
        """Run ``script`` in a child process whose engine is this service; the JSON object
        it prints last."""
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=self.env,
                              cwd=str(self.home), capture_output=True, text=True,
                              timeout=timeout, check=False)
        assert done.returncode == 0, f"the child failed:\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout.strip().splitlines()[-1])


def _podman_config(home: Path) -> dict[str, str]:
    """containers.conf and storage.conf keeping everything of this service under ``home``."""
    for name in ("root", "run", "tmp", "networks", "volumes"):
        (home / name).mkdir()
    (home / "containers.conf").write_text(textwrap.dedent(f"""\
        # No default_ulimits here: Podman's own defaults stay, as a user's machine has them.
        [engine]
        cgroup_manager = "cgroupfs"
        events_logger = "file"
        events_logfile_path = "{home}/events.log"
        tmp_dir = "{home}/tmp"
        volume_path = "{home}/volumes"
        [network]
        network_config_dir = "{home}/networks"
        """))
    (home / "storage.conf").write_text(textwrap.dedent(f"""\
        [storage]
        driver = "overlay"
        graphroot = "{home}/root"
        runroot = "{home}/run"
        """))
    return {"CONTAINERS_CONF": str(home / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(home / "storage.conf")}


def _wait_until_answering(client: docker.DockerClient, service: subprocess.Popen,
                          log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        try:
            client.ping()
            return
        except Exception:  # not listening yet
            if service.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"podman system service did not answer:\n{log.read_text()[-3000:]}",
                            pytrace=False)
            time.sleep(0.2)


def _podman(env: dict[str, str], *argv: str) -> None:
    subprocess.run(["podman", *argv], env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                   check=False)


def _unmount_under(path: Path) -> None:
    """Unmount what Podman left mounted under ``path`` (overlay layers, shm), deepest first,
    so that removing the directory never reaches through a mount."""
    inside = str(path.resolve()) + "/"
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if len(line.split()) > 1 and line.split()[1].startswith(inside)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# What rootful Podman makes outside its storage root whatever its configuration says:
# netavark's run directory (its IPAM database, aardvark-dns's), containers/image's blob info
# cache, and netavark's iptables chains with their jumps from the built-in chains (left in
# place, empty, when the last container goes). Removed at the end when the module made them.
_PODMAN_DIRS = ("/run/containers", "/var/lib/containers")
_NETAVARK = "NETAVARK"


def _iptables_lines(table: str) -> list[str]:
    done = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True,
                          check=False)
    return done.stdout.splitlines() if done.returncode == 0 else []


def _remove_netavark_chains() -> None:
    """Delete netavark's jumps from the built-in chains, then its own chains: no chain of
    Docker's is touched (each rule deleted names a NETAVARK chain)."""
    for table in ("filter", "nat"):
        lines = _iptables_lines(table)
        chains = [line[1:].split()[0] for line in lines
                  if line.startswith(":") and line[1:].startswith(_NETAVARK)]
        for line in lines:
            words = shlex.split(line)  # a rule's comment is quoted
            if words[:1] == ["-A"] and not words[1].startswith(_NETAVARK) and \
                    any(word.startswith(_NETAVARK) for word in words[2:]):
                subprocess.run(["iptables", "-t", table, "-D", *words[1:]], check=False)
        for chain in chains:
            subprocess.run(["iptables", "-t", table, "-F", chain], check=False)
        for chain in chains:
            subprocess.run(["iptables", "-t", table, "-X", chain], check=False)


def _netavark_present() -> bool:
    return any(_NETAVARK in line for table in ("filter", "nat")
               for line in _iptables_lines(table))


@pytest.fixture(scope="module")
def podman(client) -> Iterator[Podman]:
    """A private ``podman system service``, stopped and removed with its storage at the end."""
    binary = shutil.which("podman")
    if binary is None:
        pytest.fail("podman is not installed: run `make podman` (a prerequisite of "
                    "`make test`)", pytrace=False)
    made_dirs = [path for path in _PODMAN_DIRS if not os.path.exists(path)]
    made_chains = not _netavark_present()
    home = Path(tempfile.mkdtemp(prefix="pm-", dir="/tmp"))  # short: a socket path is short
    env = {**os.environ, **_podman_config(home)}
    env.pop("DOCKER_CONTEXT", None)
    url = f"unix://{home}/podman.sock"
    log = home / "service.log"
    with open(log, "wb") as out:
        service = subprocess.Popen([binary, "system", "service", "--time=0", url],
                                   env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    api = docker.DockerClient(base_url=url, version="1.41", timeout=600)
    try:
        _wait_until_answering(api, service, log)
        yield Podman(home, url, {**env, "DOCKER_HOST": url, "PYHOST_RUNTIME_DIR": str(home)},
                     api)
    finally:
        api.close()
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        _podman(env, "system", "reset", "--force")
        _unmount_under(home)
        shutil.rmtree(home, ignore_errors=True)
        for path in made_dirs:
            shutil.rmtree(path, ignore_errors=True)
        if made_chains:
            _remove_netavark_chains()


def _seed_base(client, podman: Podman) -> None:
    """Hand the shared engine's current Debian base to Podman, when it has one: made with
    debootstrap it takes minutes, and this module tests Podman, not debootstrap (the import
    that base goes through is tested on Podman below)."""
    reference = base_tag(DEFAULT_SUITE)
    attrs = inspect_image(client, reference)
    if attrs is None or image_labels(attrs).get(PACKAGES_LABEL) != base_packages():
        return  # `pyhost image build` makes one on Podman itself
    for answer in podman.client.api.load_image(client.api.get_image(reference)):
        assert "error" not in answer, f"Podman did not load {reference}: {answer}"


@pytest.fixture(scope="module")
def built(client, podman: Podman) -> Podman:
    """The session image, built on the Podman service by `pyhost image build` (once)."""
    _seed_base(client, podman)
    done = subprocess.run([sys.executable, "-m", "pyhost", "image", "build"], env=podman.env,
                          capture_output=True, text=True, timeout=_BUILD_TIMEOUT, check=False)
    assert done.returncode == 0, f"pyhost image build failed on Podman:\n" \
                                 f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "image ready" in done.stdout
    return podman


def _pyhost(podman: Podman, *argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pyhost", *argv], env=podman.env,
                          capture_output=True, text=True, timeout=300, check=False)
    return done.stdout + done.stderr


def test_doctor_and_engine_up_name_podman_and_what_it_changes(built: Podman):
    said = _pyhost(built, "doctor", "--io", str(built.home / "io"))
    lines = {line[5:17].strip(): line for line in said.splitlines()}
    assert lines["engine"].startswith("OK   engine       Podman 4.3"), said
    assert "containers ask for the engine's own open-files and process limits" in \
        lines["engine kind"], said
    assert lines["deployment"].startswith("OK"), said
    assert lines["image"].startswith("OK"), said
    # Its check runs the image's python3 in a container: Podman's limits are handled there too.
    assert lines["libraries"].startswith("OK"), said
    said = _pyhost(built, "engine", "up", "--no-install")
    assert "engine ready: Podman 4.3" in said and "Podman: images are stored as" in said, said


def test_the_design_example_io_and_the_sandbox_on_podman(built: Podman):
    io_dir = built.home / "io"
    found = built.run(f"""
        import json
        from pyhost import py
        value = (py().timeout(10).define("a", 100).define("b", 2)
                 .exec("def mult(x, y): return x * y\\n").eval("mult(a, b)"))
        with py(io={str(io_dir)!r}, timeout=30) as s:
            s.exec("open('/io/out.txt', 'w').write('written in the session')").eval("None")
            facts = s.eval("(__import__('os').getuid(), "
                           "open('/proc/self/status').read())")
            nets = s.eval("sorted(__import__('os').listdir('/sys/class/net'))")
            container = s.container_id
        print(json.dumps({{"value": value, "uid": facts[0], "status": facts[1],
                          "nets": nets, "container": container}}))
        """)
    assert found["value"] == 200
    assert (io_dir / "out.txt").read_text() == "written in the session"
    status = dict(line.split(":\t", 1) for line in found["status"].splitlines() if ":\t" in line)
    assert found["uid"] != 0 and int(status["Uid"].split()[0]) == found["uid"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert found["nets"] == ["lo"]
    # The container ran on Podman, not on the shared engine, and is gone.
    assert found["container"] and not built.client.api.containers(all=True)


def test_a_job_completes_on_podman(built: Podman):
    found = built.run(f"""
        import json
        import pyhost.runtime as dh
        dh.configure({str(built.home / "home")!r})
        project = dh.get_or_create_project("podman")
        fn = project.new_function(name="fn", kind="python", code_src={str(FUNCTIONS)!r},
                                  handler="func5")
        di = project.log_dataitem(name="d", kind="table",
                                  data=__import__("pandas").DataFrame({{"x": [1, 2, 3]}}))
        run = fn.run(action="job", inputs={{"di": di.key}}, parameters={{"param1": "p"}},
                     outputs={{"result": "named_result"}}, wait=True)
        print(json.dumps({{"state": run.status.state, "error": run.status.error,
                          "total": run.result("total")}}))
        """)
    assert found["state"] == "COMPLETED", found["error"]
    assert found["total"] == 6


def test_a_serve_answers_on_podman(built: Podman):
    found = built.run(f"""
        import json
        import pyhost.runtime as dh
        dh.configure({str(built.home / "home-serve")!r})
        project = dh.get_or_create_project("podman")
        fn = project.new_function(name="srv", kind="python", code_src={str(SERVING)!r},
                                  handler="handler", init_function="init_context")
        run = fn.run(action="serve", replicas=1,
                     init_parameters={{"greeting": "hi", "factor": 3}})
        try:
            state, error = run.status.state, run.status.error
            answer = run.invoke(method="POST", path="/echo", json={{"n": 7}}) \\
                if state == "RUNNING" else None
        finally:
            run.stop()
        print(json.dumps({{"state": state, "error": error,
                          "status": answer.status if answer else None,
                          "body": answer.json() if answer else None}}))
        """)
    assert found["state"] == "RUNNING", found["error"]
    assert found["status"] == 200, found


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_an_imported_rootfs_is_tagged_as_asked(engine, request, tmp_path):
    """Podman's import keeps no tag (4.3 stores docker.io/library/NAME:latest); pyhost's
    import tags what the engine stored, and takes the stray ``latest`` off. On Docker, which
    keeps the tag, nothing changes."""
    api = request.getfixturevalue("podman").client if engine == "podman" else \
        request.getfixturevalue("client")
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"a root filesystem of one file\n"
        entry = tarfile.TarInfo("etc/hello")
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))
    repository = f"pyhost-import-test-{os.getpid()}"
    attrs = import_rootfs(api, archive, repository, "bookworm", ["LABEL org.pyhost.test=import"])
    try:
        assert image_labels(attrs).get("org.pyhost.test") == "import"
        assert inspect_image(api, f"{repository}:bookworm")["Id"] == attrs["Id"]
        assert inspect_image(api, f"{repository}:latest") is None
    finally:
        with contextlib.suppress(docker.errors.APIError):
            api.api.remove_image(attrs["Id"], force=True)
