"""Handlers of the runtime demo (examples/demo.py)."""

from hxpy.runtime import handler


@handler(outputs=["scored", "mean"])
def score(project, run, readings, factor):
    """Scale a table of readings, log a report file, and return the table and its mean."""
    df = readings.as_df()
    df["score"] = df["value"] * factor
    run.log_metric("rows", len(df))
    with open("/tmp/report.txt", "w") as report:
        report.write(df.describe().to_string())
    project.log_artifact(name="score-report", source="/tmp/report.txt")
    return df, float(df["score"].mean())


def broken(readings):
    return readings.as_df()["missing column"]
