"""A serve replica that never comes up and floods its logs meanwhile, with a secret in them:
the start fails after ``ready_timeout`` naming the replica, its error carries at most
``TAIL_LINES`` short lines and never the secret, no container is left, the host's memory
stays bounded, and another project's job started meanwhile completes."""

from __future__ import annotations

import textwrap
import threading
import time

import pyhost.runtime as dh
from pyhost.runtime.tasks.service import TAIL_LINES

from .conftest import peak_rss_bytes

MiB = 1024**2
SECRET_VALUE = "s3cr3t-value-of-the-serve-test"

FLOODER = textwrap.dedent("""
    import os
    import time

    def init_flood(context):
        line = os.environ["SDK_SERVE_SECRET"] + " " + "x" * 100_000
        for _ in range(200):  # 20 MB of log lines, each carrying the secret
            print(line, flush=True)
        time.sleep(600)

    def handler(context, event):
        return "never"
""").lstrip()


def _other_project_job(results: dict[str, object]) -> None:
    try:
        fn = dh.get_or_create_project("bystander").new_function(
            name="calm", kind="python", handler="main", code="def main():\n    return 'done'\n")
        run = fn.run(action="job", wait=True)
        results["state"], results["result"] = run.status.state, run.result("result")
    except Exception as exc:  # reported by the test, not lost in the thread
        results["exception"] = exc


def test_a_flooding_replica_that_never_answers_is_named_briefly_and_removed(
        home, monkeypatch, our_containers, jobs_settle):
    monkeypatch.setenv("SDK_SERVE_SECRET", SECRET_VALUE)
    project = dh.get_or_create_project("flood")
    fn = project.new_function(name="flood", kind="python", code=FLOODER, handler="handler",
                              init_function="init_flood")
    before = peak_rss_bytes()
    results: dict[str, object] = {}
    bystander = threading.Thread(target=_other_project_job, args=(results,))
    run = fn.run(action="serve", wait=False, ready_timeout=20, secrets=["SDK_SERVE_SECRET"])
    bystander.start()
    run.wait()  # ready_timeout bounds it
    bystander.join()
    assert run.status.state == "ERROR"
    message = run.status.error["message"]
    assert message.startswith("1 of 1 replica(s) did not answer within 20 s; replica 0 (")
    assert SECRET_VALUE not in message and "***" in message
    assert len(message) < TAIL_LINES * 310 + 300  # 10 lines of 300 characters, and the names
    assert SECRET_VALUE not in run.logs()
    deadline = time.monotonic() + 15  # the engine removes them (auto_remove) just after
    while our_containers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not our_containers()
    assert peak_rss_bytes() - before < 64 * MiB
    assert results.get("state") == "COMPLETED" and results.get("result") == "done", results
