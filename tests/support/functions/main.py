"""Handlers of the runtime tests: the design's five examples and a few more."""

import os
import time

from hxpy.runtime import handler


def func1(param1):
    """A plain value from a parameter."""
    return f"hello {param1}"


def func2(di):
    """An input dataitem read as a DataFrame; a plain value back."""
    return int(di.as_df()["x"].sum())


def func3(project, param1):
    """Logs an artifact from inside the run, and a metric."""
    path = "/tmp/report.txt" if os.path.isdir("/tmp") else "report.txt"
    with open(path, "w") as out:
        out.write(f"report for {param1}\n" * 1000)
    artifact = project.log_artifact(name="report", kind="artifact", source=path)
    return artifact


def func4(context, event):
    """A serve handler: a job refuses it before it starts."""
    return event


@handler(outputs=["result", "total"])
def func5(di, param1, run=None):
    """The design's example: a table in, a table and a number out."""
    df = di.as_df()
    df["label"] = param1
    if run is not None:
        run.log_metric("rows", len(df))
    return df, int(df["x"].sum())


def fails(depth=1):
    if depth:
        return fails(depth - 1)
    raise KeyError("nothing here")


def secret_user():
    value = os.environ["API_TOKEN"]
    print(f"the token is {value}")
    return len(value)


def sleeper(seconds=30):
    time.sleep(seconds)
    return "woke"


def takes_any(**kwargs):
    return sorted(kwargs)


def volume_probe(data="/data", scratch="/scratch"):
    """What a job sees of its volumes: a named one (read-only) and a tmpfs (writable)."""
    seen = open(os.path.join(data, "seed.txt")).read()
    try:
        open(os.path.join(data, "new.txt"), "w")
        data_writable = True
    except OSError:
        data_writable = False
    with open(os.path.join(scratch, "x"), "w") as out:
        out.write("ok")
    return {"seen": seen, "data_writable": data_writable}


@handler(outputs=["refused", "model"])
def careful(project):
    """Calls the host may refuse; the handler goes on after each refusal."""
    from hxpy.server import HostCallError

    refused = []
    for attempt in (lambda: project.get_dataitem("store://other/dataitem/table/d"),
                    lambda: project.get_artifact("no-such-artifact"),
                    lambda: project.log_artifact(name="../escape", source=__file__)):
        try:
            attempt()
        except HostCallError as exc:
            refused.append(str(exc).split(":")[0])
    with open("/tmp/model.bin" if os.path.isdir("/tmp") else "model.bin", "wb") as out:
        out.write(os.urandom(3 * 1024 * 1024 + 5))  # more than one chunk
    model = project.log_model(name="m", source=out.name, framework="sklearn",
                              metrics={"accuracy": 0.93})
    return refused, model


def text_cells(rows):
    """Text of every width of character, and nulls; the same list on both sides."""
    kinds = ["plain", "é", "日本語", "🙂", None]
    return [kind if kind is None else f"{kind}{index}"
            for index, kind in zip(range(rows), kinds * rows)]


def text_table(project, rows=5000):
    """A table of text logged from the container (large enough to travel as buffers)."""
    import pandas as pd

    project.log_dataitem("texts", kind="table", data=pd.DataFrame({"t": text_cells(rows)}))
