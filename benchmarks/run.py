"""pyhost benchmarks: ``python benchmarks/run.py [--quick] [--only NAME ...]``.

Prints the machine, then one table row per measurement: samples, best/median/p95, the target,
a baseline measured in the same run and the verdict. It is a report: a missed target is a
``MISS`` in the table, never a failed assertion, and the exit status is 0 whenever the runner
itself worked.

To add a row, write one function that takes the :class:`Bench` and returns a list of
:class:`~benchmarks.report.Result`, and decorate it with ``@row("name")``. Raise
:class:`~benchmarks.report.Unavailable` when a feature it needs is missing; the row then
shows ``n/a`` with the reason and the run goes on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyhost  # noqa: E402
from benchmarks.bench import ROWS, Bench  # noqa: E402
from benchmarks.report import Result, Unavailable, format_table  # noqa: E402

RESULTS_FILE = Path(__file__).resolve().parent / "results.json"

# Importing a rows module registers its rows; the table keeps this order.
for _module in ("rows_latency", "rows_data", "rows_scale", "rows_runtime", "rows_live",
                "rows_console", "rows_serve", "rows_swarm"):
    importlib.import_module(f"benchmarks.{_module}")


# -- the run -----------------------------------------------------------------------------------

def machine_facts(bench: Bench | None) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "pyhost": getattr(pyhost, "__version__", "?"),
        "git": _git_revision(),
        # Other work on the machine moves every number here: look at this first.
        "load_average": " ".join(f"{value:.2f}" for value in os.getloadavg()),
    }
    if bench is not None:
        version = bench.client.version()
        info = bench.client.info()
        facts["docker"] = (f"{version.get('Version')} (API {version.get('ApiVersion')}, "
                           f"{info.get('Driver')}, cgroup v{info.get('CgroupVersion', '?')}, "
                           f"{info.get('NCPU')} CPUs)")
        facts["image"] = f"{bench.image_tag} = {_image_state(bench)}"
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + (" + uncommitted changes" if dirty.strip() else "")


def _image_state(bench: Bench) -> str:
    text = bench.image[7:19]
    try:
        from pyhost.launchers.docker.image import image_status

        status = image_status(bench.image_tag, bench.client)
    except Exception:  # best effort: the image module is optional here
        return text
    current = getattr(status, "up_to_date", None)
    return text + {True: ", built from the current sources",
                   False: ", STALE: built from older sources (`pyhost image build`)",
                   None: ""}[current]


def run(names: list[str], quick: bool) -> tuple[dict[str, Any], list[Result]]:
    bench = Bench(quick)
    facts = machine_facts(bench)
    print(_facts_text(facts), flush=True)
    busy = os.getloadavg()[0]
    if busy > (os.cpu_count() or 1) * 0.5:
        print(f"warning: the machine is busy (load {busy:.1f} on {os.cpu_count()} cores); "
              "expect noisy numbers\n", flush=True)
    results: list[Result] = []
    try:
        for name in names:
            entry = ROWS[name]
            issue = f" (issue {entry.issue})" if entry.issue else ""
            print(f"[{time.strftime('%H:%M:%S')}] {name}{issue} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                produced = entry.function(bench)
            except Unavailable as exc:
                produced = [Result(name, "", unavailable=str(exc))]
            except Exception as exc:  # a broken row must not cost the others
                traceback.print_exc()
                produced = [Result(name, "", unavailable=f"error: {type(exc).__name__}: {exc}")]
            for result in produced:
                bench.results[result.name] = result
            results.extend(produced)
            print(f"[{time.strftime('%H:%M:%S')}] {name} took {time.monotonic() - started:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        leftovers = bench.close()
        if leftovers:
            print(f"removed {leftovers} leftover bench container(s)", file=sys.stderr)
    return facts, results


def _facts_text(facts: dict[str, Any]) -> str:
    width = max(len(key) for key in facts)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in facts.items()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples (the whole run in about three minutes)")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help=f"run only this row (repeatable, or comma separated): "
                             f"{', '.join(ROWS)}")
    parser.add_argument("--build", action="store_true",
                        help="first bring the session image up to date with the sources "
                             "(`pyhost image build`; a no-op when current)")
    parser.add_argument("--json", metavar="PATH", default=str(RESULTS_FILE),
                        help="where to write the results as JSON ('' for nowhere)")
    args = parser.parse_args(argv)
    names = [name for value in args.only for name in value.split(",") if name] or list(ROWS)
    unknown = [name for name in names if name not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(ROWS)}")
    started = time.monotonic()
    if args.build:
        from pyhost.launchers.docker.image import build_image

        print(f"session image: {build_image()}", file=sys.stderr, flush=True)
    facts, results = run(names, args.quick)
    print(format_table(results))
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\n{'quick' if args.quick else 'full'} run, {time.monotonic() - started:.0f} s; "
          f"load average at the end {load}")
    if args.json:
        data = {"facts": facts, "quick": args.quick,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "results": [result.to_json() for result in results]}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
