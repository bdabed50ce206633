"""The design's handlers as the DigitalHub docs write them: the SDK's import line, unchanged.
Runs where the real SDK is not installed through hxpy's shim (hxpy.runtime.shim)."""

import os

from digitalhub_runtime_python import handler


@handler(outputs=["greeting"])
def func1(param1):
    """A plain value from a parameter."""
    return f"hello {param1}"


@handler()
def func2(di):
    """An input dataitem read as a DataFrame; a plain value back."""
    return int(di.as_df()["x"].sum())


@handler(outputs=["report"])
def func3(project, param1):
    """Logs an artifact from inside the run."""
    path = "/tmp/report.txt" if os.path.isdir("/tmp") else "report.txt"
    with open(path, "w") as out:
        out.write(f"report for {param1}\n" * 100)
    return project.log_artifact(name="report", kind="artifact", source=path)


@handler(outputs=["result", "total"])
def func5(di, param1, run=None):
    """The design's example: a table in, a table and a number out."""
    df = di.as_df()
    df["label"] = param1
    if run is not None:
        run.log_metric("rows", len(df))
    return df, int(df["x"].sum())


def which_handler():
    """Where ``digitalhub_runtime_python`` came from, and whether its handler is hxpy's."""
    import digitalhub_runtime_python

    from hxpy.runtime import handler as hxpy_handler

    return {"file": digitalhub_runtime_python.__file__,
            "same_handler": digitalhub_runtime_python.handler is hxpy_handler}
