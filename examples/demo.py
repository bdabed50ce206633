"""The pyhost demo, in real containers: a session (define/exec/eval, /io, a remote error, the
sandbox), then the python runtime (a function run as a job, its outputs in the catalog, a
build, a service, and a run that outlives its caller, its log followed live)."""

import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

import pyhost.runtime as dh
from pyhost import PythonError, py
from pyhost.runtime.agent import stop_agent

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    print("1. The design's example: define, exec, eval in one round trip")
    val = (py().timeout(10)
               .define("a", 100)
               .define("b", 2)
               .exec("def mult(x, y): return x * y\n")
               .eval("mult(a, b)"))
    print(f"   mult(a, b) = {val}")

    print("2. One session across evals (with), and what the code printed")
    with py() as session:
        session.exec("import platform, os").eval("None")
        info = session.eval("print('hello from the sandbox'); "
                            "(platform.python_version(), os.getuid())")
        print(f"   python {info[0]} as uid {info[1]} in container {session.container_id[:12]}")
        print(f"   it printed: {session.last_output.strip()!r}")

        print("3. /io: the container writes, the host reads")
        session.eval("open('/io/example.txt', 'w').write('written in the container')")
        with open(os.path.join("io", "example.txt")) as written:
            print(f"   io/example.txt: {written.read()!r}")

        print("4. An error in user code, with its remote traceback; the session survives")
        try:
            session.exec("def ratio(x, y):\n    return x / y\n").eval("ratio(1, 0)")
        except PythonError as exc:
            print("   " + str(exc).replace("\n", "\n   "))
        print(f"   still usable: ratio(1, 4) = {session.eval('ratio(1, 4)')}")

        print("5. The sandbox")
        print("   network interfaces:", session.eval("sorted(os.listdir('/sys/class/net'))"))
        try:
            session.eval("open('/etc/passwd', 'a')")
        except PythonError as exc:
            print(f"   writing /etc/passwd: {exc.remote_type}: {exc.remote_message}")

    # The runtime's catalog and store stay after the demo (made afresh each time), so that
    # the console can show them.
    home = Path(os.environ.get("PYHOST_DEMO_HOME", "demo-home")).absolute()
    shutil.rmtree(home, ignore_errors=True)
    runtime_demo(str(home))
    print("done: no container is left behind")
    print(f"the demo's catalog in the browser: {Path(sys.executable).parent / 'pyhost'} "
          f"console --home {home}   (then open http://127.0.0.1:8765/)")


def runtime_demo(home: str) -> None:
    """A function run as a job: its handler's calls on `project` travel back over the
    session's channel into an embedded catalog (here in a temporary directory)."""
    dh.configure(home)
    print("6. The runtime: a project, a table, a function run as a job in a container")
    print("   its handler file starts as the DigitalHub docs write it: "
          "from digitalhub_runtime_python import handler")
    project = dh.get_or_create_project("demo")
    readings = project.log_dataitem(name="readings", kind="table",
                                    data=pd.DataFrame({"value": [1.0, 2.5, 4.0, 8.5]}))
    fn = project.new_function(name="score", kind="python", handler="score",
                              code_src=os.path.join(HERE, "functions", "main.py"))
    run = fn.run(action="job", inputs={"readings": readings.key}, parameters={"factor": 10},
                 outputs={"scored": "scored-readings"}, wait=True)
    print(f"   run {run.id[:12]}: {run.status.state}, mean score {run.result('mean')}, "
          f"metrics {run.status.metrics}")
    print(f"   output {run.output('scored-readings').key}:")
    print("   " + run.output("scored-readings").as_df().to_string().replace("\n", "\n   "))
    print(f"   logged in the container: {project.get_artifact('score-report').key}")
    print("7. A failing handler: the run is ERROR with the user's own traceback")
    failed = project.new_function(name="broken", handler="broken",
                                  code_src=os.path.join(HERE, "functions", "main.py")) \
        .run(inputs={"readings": readings.key}, wait=True)
    print(f"   {failed.status.state}: {failed.status.message}")
    lines = failed.status.error["traceback"].strip().splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("Traceback"))
    print("   " + "\n   ".join(lines[last:last + 3] + ["   ...", lines[-1]]))
    build_and_serve_demo(project)


def build_and_serve_demo(project: dh.Project) -> None:
    """The function's own image (built offline, a no-op when unchanged), then served by two
    supervised replicas over HTTP."""
    fn = project.new_function(name="scorer", handler="scorer", init_function="init_scorer",
                              code_src=os.path.join(HERE, "functions", "main.py"))
    print("8. build: the function's image, with an instruction run as root (no network)")
    for attempt in ("first", "unchanged"):
        built = fn.run(action="build", instructions=["echo scored > /opt/marker"], wait=True,
                       progress=False)
        print(f"   {attempt}: {built.status.state} {built.status.image} "
              f"(built={built.status.built}, {built.status.seconds:.2f} s)")
    print("9. serve: two replicas on loopback, init_function once per replica")
    served = fn.run(action="serve", replicas=2, init_parameters={"factor": 3})
    try:
        print(f"   {served.status.state} at {', '.join(served.status.service['urls'])}")
        for _ in range(2):
            answer = served.invoke(method="POST", json={"values": [1, 2.5]}).json()
            print(f"   POST {{'values': [1, 2.5]}} -> {answer}")
    finally:
        served.stop()
    print(f"   {served.status.state}: every replica removed")
    detached_demo(project)


TICKER = """
import time

def ticker(count):
    for i in range(count):
        print(f"tick {i}", flush=True)
        time.sleep(0.3)
    return count
"""


def detached_demo(project: dh.Project) -> None:
    """A run nobody waits for belongs to a supervisor process (forked by the home's agent),
    not to this one; its log is followed while the handler prints, then it is waited for."""
    print("10. A run that outlives its caller: wait=False, its log followed live")
    fn = project.new_function(name="ticker", kind="python", code=TICKER, handler="ticker")
    started = time.monotonic()
    run = fn.run(action="job", parameters={"count": 4})
    owner = run.refresh().metadata["owner"]["org.pyhost.owner.pid"]
    print(f"   fn.run returned in {(time.monotonic() - started) * 1e3:.0f} ms (the first such "
          f"run starts the home's agent); run "
          f"{run.id[:12]} is owned by pid {owner} (this process is {os.getpid()})")
    for line in run.logs(follow=True):
        print(f"   +{time.monotonic() - started:4.1f} s  {line.rstrip()}")
    print(f"   {run.wait().status.state}: {run.results()}")
    stop_agent(Path(dh.get_runtime().home or "."))


if __name__ == "__main__":
    main()
