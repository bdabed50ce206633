"""Sessions and runtime jobs on a Docker Swarm cluster, through the same launcher interface.

The tests need a swarm manager: the local engine is made a single-node swarm for them
(``swarm_up``) unless it is one already, and leaves the swarm at the end only if they made
it. The routing mesh is not used (this kernel has no IPVS): sessions are reached on host-mode
published ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker.errors
import pandas as pd
import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError, py
from pyhost.launchers.docker.swarm.cluster import swarm_leave, swarm_state, swarm_up
from pyhost.launchers.docker.swarm.orphans import collect_swarm
from pyhost.launchers.ownership import LABEL_PREFIX, SESSION_LABEL

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def swarm(client):
    state, made = swarm_up(client)
    assert state.manager, state.describe()
    yield state
    if made:
        swarm_leave(client)


@pytest.fixture(autouse=True)
def no_leftover_services(client, swarm):
    yield
    # Swarm removes a removed service's task container a moment later.
    deadline = time.monotonic() + 10
    while (_our_services(client) or _our_containers(client)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _our_services(client)
    for service in left:
        client.api.remove_service(service["ID"])
    assert not left, f"the test left {len(left)} service(s) behind"


def _our_services(client, pid: int | None = None):
    return client.api.services(
        filters={"label": f"{LABEL_PREFIX}.owner.pid={pid or os.getpid()}"})


def _our_containers(client):
    return client.api.containers(
        all=True, filters={"label": f"{LABEL_PREFIX}.owner.pid={os.getpid()}"})


def _task_container(client, service_id):
    tasks = client.api.tasks(filters={"service": service_id})
    container_id = tasks[0]["Status"]["ContainerStatus"]["ContainerID"]
    return client.api.inspect_container(container_id)


def test_the_design_example_as_a_swarm_session(client):
    assert py(launcher="swarm").timeout(10).define("a", 100).define("b", 2) \
        .exec("def mult(x, y): return x * y\n").eval("mult(a, b)") == 200


def test_a_swarm_session_keeps_the_sandbox(client):
    with py(launcher="swarm", mem_limit="256m", cpus=0.5) as session:
        assert session.eval("__import__('os').getuid()") == 61000
        (service,) = _our_services(client)
        attrs = _task_container(client, service["ID"])
        host = attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert host["Memory"] == 256 << 20
        assert host["NanoCpus"] == 500_000_000
        assert host["PidsLimit"] == 256
        # No route out: the gateway bridge does not masquerade.
        session.exec("import socket\n"
                     "def reach(address):\n"
                     "    with socket.socket() as s:\n"
                     "        s.settimeout(2)\n"
                     "        return s.connect_ex(address)\n")
        # The node's own address answers (a refused port proves a route) ... but no reply
        # from beyond it finds its way back.
        assert session.eval("reach(('192.0.2.2', 9))") in (111,)  # ECONNREFUSED
        assert session.eval("reach(('192.0.2.1', 9))") not in (0, 111)
        assert service["Spec"]["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1,
                                                             "TotalCompletions": 1}}


def test_a_runtime_job_on_the_swarm(client, tmp_path):
    dh.configure(tmp_path / "home")
    project = dh.get_or_create_project("demo")
    di = project.log_dataitem(name="d", kind="table", data=pd.DataFrame({"x": [1, 2, 3]}))
    fn = project.new_function(name="python-function", kind="python",
                              code_src=str(FUNCTIONS / "main.py"), handler="func5")
    run = fn.run(inputs={"di": di.key}, parameters={"param1": "swarm"},
                 outputs={"result": "named"}, launcher="swarm", wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("total") == 6
    assert list(run.output("named").as_df()["label"]) == ["swarm"] * 3

    logged = project.new_function(name="logs", kind="python",
                                  code_src=str(FUNCTIONS / "main.py"), handler="func3")
    run = logged.run(parameters={"param1": "s"}, launcher="swarm", wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    artifact = project.get_artifact("report")
    got = Path(artifact.download(tmp_path / "out")).read_text()
    assert got == "report for s\n" * 1000


def _required(operator, *values):
    """A Kubernetes node affinity on the test label, as DigitalHub passes it."""
    expression = {"key": "pyhost-test", "operator": operator, "values": list(values)}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [expression]}]}}}


def _set_node_labels(client, node_id, labels):
    """Give the node exactly ``labels``. The manager bumps a node's version on its own (a
    fresh swarm reports the node's description shortly after it is made), and an update
    against the version read just before then is refused "out of sequence": read again."""
    deadline = time.monotonic() + 10
    while True:
        node = client.api.inspect_node(node_id)
        try:
            client.api.update_node(node_id, node["Version"]["Index"],
                                   {**node["Spec"], "Labels": labels})
            return
        except docker.errors.APIError as exc:
            if "out of sequence" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_node_selector_and_affinity_place_the_job(client, swarm, tmp_path):
    dh.configure(tmp_path / "home")
    project = dh.get_or_create_project("demo")
    fn = project.new_function(name="f1", kind="python", code_src=str(FUNCTIONS / "main.py"),
                              handler="func1")
    labels = dict(client.api.inspect_node(swarm.node_id)["Spec"].get("Labels") or {})
    _set_node_labels(client, swarm.node_id, {**labels, "pyhost-test": "here"})
    try:
        run = fn.run(parameters={"param1": "x"}, launcher="swarm", wait=True,
                     node_selector={"pyhost-test": "here"})
        assert run.status.state == "COMPLETED", run.status.error
        run = fn.run(parameters={"param1": "x"}, launcher="swarm", wait=True,
                     node_selector={"pyhost-test": "elsewhere"})
        assert run.status.state == "ERROR"
        assert "no node of the swarm can run" in run.status.message
        run = fn.run(parameters={"param1": "x"}, launcher="swarm", wait=True,
                     affinity=_required("NotIn", "there", "here"))
        assert run.status.state == "ERROR"
        assert "node.labels.pyhost-test!=here" in run.status.message
        run = fn.run(parameters={"param1": "x"}, launcher="swarm", wait=True,
                     affinity=_required("In", "here"), tolerations=[{"operator": "Exists"}])
        assert run.status.state == "COMPLETED", run.status.error
        # Once the label goes, `!=here` holds: a task of a service still being removed would
        # be placed then. Its services are gone first.
        deadline = time.monotonic() + 10
        while _our_services(client):
            assert time.monotonic() < deadline, _our_services(client)
            time.sleep(0.05)
    finally:
        _set_node_labels(client, swarm.node_id, labels)
    with pytest.raises(ConfigurationError, match="podAntiAffinity: Swarm places tasks by node"):
        fn.run(parameters={"param1": "x"}, launcher="swarm", affinity={"podAntiAffinity": {}})
    with pytest.raises(ConfigurationError, match="In with 2 values"):
        fn.run(parameters={"param1": "x"}, launcher="swarm",
               affinity=_required("In", "here", "there"))


def test_gc_removes_the_service_of_a_killed_host(client):
    code = ("from pyhost import py\n"
            "s = py(launcher='swarm'); s.__enter__(); s.eval('1')\n"
            "print('ready', flush=True)\n"
            "import time; time.sleep(300)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "container")])}
    host = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env,
                            text=True)
    try:
        assert host.stdout is not None and host.stdout.readline().strip() == "ready"
        assert len(_our_services(client, host.pid)) == 1
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    report = collect_swarm(client)
    assert not _our_services(client, host.pid)
    assert len(report.services) >= 1, report


def test_an_explicit_io_dir_is_refused_before_anything_starts(client, tmp_path):
    with pytest.raises(ConfigurationError, match="nodes of a swarm cannot mount"):
        py(launcher="swarm", io=str(tmp_path))
    assert not client.api.services(filters={"label": SESSION_LABEL})


def test_the_swarm_state_is_reported(client, swarm):
    from pyhost.launchers.docker.swarm.doctor import diagnose_swarm

    state = swarm_state(client)
    assert state.manager and state.nodes >= 1
    assert "manager" in state.describe()
    checks = {check.name: check for check in diagnose_swarm(client)}
    assert checks["swarm"].ok and checks["gateway"].ok, checks  # swarm-up's gateway


def test_a_secret_travels_as_a_swarm_secret_and_goes_with_the_session(client):
    value = "sw4rm-" + os.urandom(8).hex()
    with py(launcher="swarm", secrets={"API_TOKEN": value}) as session:
        assert session.eval("__import__('os').environ['API_TOKEN']") == value
        (service,) = _our_services(client)
        assert value not in repr(client.api.inspect_service(service["ID"]))
        made = client.api.secrets(filters={"label": f"{LABEL_PREFIX}.owner.pid={os.getpid()}"})
        # The run secret and the session key (no key in the service's environment either).
        assert sorted(secret["Spec"]["Name"].rsplit("-", 1)[-1] for secret in made) == \
            ["API_TOKEN", "key"]
        assert value not in repr(made)
        assert "HXPY_KEY=" not in repr(client.api.inspect_service(service["ID"]))
    assert not client.api.secrets(filters={"label": f"{LABEL_PREFIX}.owner.pid={os.getpid()}"})


def test_a_job_secret_reaches_the_handler_and_nowhere_else(client, tmp_path, monkeypatch):
    value = "j0b-" + os.urandom(8).hex()
    monkeypatch.setenv("API_TOKEN", value)
    dh.configure(tmp_path / "home")
    project = dh.get_or_create_project("demo")
    fn = project.new_function(name="secret", kind="python",
                              code_src=str(FUNCTIONS / "main.py"), handler="secret_user")
    run = fn.run(secrets=["API_TOKEN"], launcher="swarm", wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("result") == len(value)
    assert "***" in run.logs() and value not in run.logs()
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes(), path


SERVING = Path(__file__).resolve().parents[1] / "support" / "serving" / "main.py"


def test_a_serve_run_on_the_swarm_spreads_over_two_replicas(client, tmp_path):
    dh.configure(tmp_path / "home")
    project = dh.get_or_create_project("serving")
    fn = project.new_function(name="srv", kind="python", code_src=str(SERVING),
                              handler="handler", init_function="init_context")
    run = fn.run(action="serve", replicas=2, launcher="swarm",
                 init_parameters={"greeting": "hi", "factor": 3})
    try:
        assert run.status.state == "RUNNING", run.status.error
        assert len(run.status.service["urls"]) == 2
        bodies = [run.invoke(method="POST", path="/echo", json={"n": i}).json()
                  for i in range(6)]
        assert {body["replica"] for body in bodies} == {0, 1}
        assert len({body["hostname"] for body in bodies}) == 2  # two tasks
        assert {body["greeting"] for body in bodies} == {"hi"}
        assert len(_our_services(client)) == 2
    finally:
        run.stop()
    assert run.status.state == "STOPPED"


def test_load_balancer_names_the_missing_ipvs(client, tmp_path):
    from pyhost.launchers.docker.swarm.cluster import ipvs_available

    dh.configure(tmp_path / "home")
    project = dh.get_or_create_project("serving")
    fn = project.new_function(name="srv", kind="python", code_src=str(SERVING),
                              handler="handler")
    cause = "no IPVS" if ipvs_available() is False else "cannot front"
    with pytest.raises(ConfigurationError, match=cause):
        fn.run(action="serve", service_type="LoadBalancer", launcher="swarm")
    assert not _our_services(client)


OVERLAY_SCRIPT = """
import json
from pyhost import py
value = py(launcher="swarm", network="pyhost-swarm", io=None).timeout(10) \\
    .define("a", 100).define("b", 2).exec("def mult(x, y): return x * y\\n") \\
    .eval("mult(a, b)")
print("RESULT " + json.dumps({"value": value}))
"""


def test_pyhost_in_a_container_on_the_overlay_reaches_its_session_there(client, tmp_path):
    """pyhost itself in a container on the attachable overlay: the session task is reached
    at its address on the overlay, with no port published."""
    from tests.support.dind import dind_host_image, host_result, run_host

    with dind_host_image(client) as image:
        code, output = run_host(client, image, OVERLAY_SCRIPT, "pyhost-swarm", str(tmp_path))
    assert code == 0, output
    assert host_result(output)["value"] == 200


def test_volumes_become_swarm_mounts(client):
    from pyhost.launchers.base import Volume

    name = f"pyhost-test-{os.urandom(4).hex()}"
    client.api.create_volume(name, labels={"org.pyhost.test": "1"})
    try:
        volumes = (Volume("tmpfs", "/scratch", size="16m"), Volume("volume", "/data", name),
                   Volume("volume", "/shared", name, read_only=False))
        with py(launcher="swarm", volumes=volumes) as session:
            session.exec("import os\n"
                         "def try_write(path):\n"
                         "    try:\n"
                         "        open(path, 'w').write('x')\n"
                         "        return 'written'\n"
                         "    except OSError as exc:\n"
                         "        return exc.strerror\n")
            assert session.eval("try_write('/scratch/a')") == "written"
            assert session.eval("try_write('/data/a')") == "Read-only file system"
            (service,) = _our_services(client)
            mounts = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"]
            assert {(m["Type"], m["Target"], bool(m.get("ReadOnly"))) for m in mounts} >= {
                ("tmpfs", "/scratch", False), ("volume", "/data", True),
                ("volume", "/shared", False)}
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.api.remove_volume(name)
                break
            except Exception:  # still held by the task's container for a moment
                time.sleep(0.2)


def test_gc_removes_the_exited_container_swarm_keeps_after_its_service(client):
    """Swarm keeps a finished job task's container after the service is removed; gc (run
    against the node's engine) removes it then, though its owner (this process) lives."""
    from docker.types import ContainerSpec, RestartPolicy, ServiceMode, TaskTemplate

    from pyhost.launchers.docker.orphans import collect
    from pyhost.launchers.ownership import Owner

    labels = Owner.current().labels("gc-probe")
    spec = ContainerSpec("hxpy:latest", command=["python3", "-c", "pass"], labels=labels)
    service = client.api.create_service(
        TaskTemplate(spec, restart_policy=RestartPolicy(condition="none")), labels=labels,
        mode=ServiceMode("replicated-job", concurrency=1, replicas=1))
    deadline = time.monotonic() + 60
    while True:
        tasks = client.api.tasks(filters={"service": service["ID"]})
        if tasks and tasks[0]["Status"]["State"] == "complete":
            break
        assert time.monotonic() < deadline, tasks
        time.sleep(0.1)
    container = tasks[0]["Status"]["ContainerStatus"]["ContainerID"]
    # While its service exists, its live owner may still read its logs: it stays.
    assert container not in collect(client).containers
    client.api.remove_service(service["ID"])
    time.sleep(1)
    assert client.api.inspect_container(container)["State"]["Status"] == "exited"
    report = collect(client)
    assert container in report.containers


RACE_SCRIPT = """
import sys, time
from pyhost.launchers.docker.client import docker_client
from pyhost.launchers.docker.swarm.cluster import ensure_network
client = docker_client()
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(ensure_network(client, sys.argv[1]))
"""


def test_processes_racing_to_make_the_overlay_all_get_it(client):
    """Several processes make the network at the same moment (as 8 jobs in flight on a new
    swarm do): one makes it, the others find it; none fails."""
    name = f"pyhost-race-{os.urandom(4).hex()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "container")])}
    start = time.time() + 2.0
    racers = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, name, str(start)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env) for _ in range(4)]
    try:
        answers = [racer.communicate(timeout=60) for racer in racers]
        assert all(racer.returncode == 0 for racer in racers), answers
        assert len({out.strip() for out, _ in answers}) == 1
    finally:
        for network in client.api.networks(names=[name]):
            client.api.remove_network(network["Id"])


def test_a_warm_pool_on_the_swarm_hands_its_tasks_to_sessions_and_jobs(client, tmp_path):
    import pyhost

    pool = pyhost.warm_pool(2, launcher="swarm", io=None)
    try:
        assert pool.wait_ready(120)
        waiting = {service["ID"] for service in _our_services(client)}
        assert len(waiting) == 2  # two one-task services, labelled as this process's
        with py(launcher="swarm", io=None) as session:
            assert session.eval("1 + 1") == 2
        assert pool.ready == 1 and len(waiting - {s["ID"] for s in _our_services(client)}) == 1
        dh.configure(tmp_path / "home")
        fn = dh.get_or_create_project("demo").new_function(
            name="inc", kind="python", code="def f(x):\n    return x + 1\n", handler="f")
        assert pool.wait_ready(120)
        before = {service["ID"] for service in _our_services(client)}
        run = fn.run(parameters={"x": 1}, launcher="swarm", wait=True)
        assert run.status.state == "COMPLETED", run.status.error
        assert run.result("output_0") == 2
        assert pool.ready < 2  # taken by the job (a refill waits, and takes seconds)
        deadline = time.monotonic() + 30  # its service goes just after the run is recorded
        while not before - {service["ID"] for service in _our_services(client)}:
            assert time.monotonic() < deadline, "the job's pooled service stayed"
            time.sleep(0.1)
    finally:
        pool.close()
    assert not _our_services(client)
