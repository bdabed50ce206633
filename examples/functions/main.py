"""Handlers of the runtime demo (examples/demo.py), written as the DigitalHub docs write them:
the same file runs on DigitalHub and on pyhost."""

from digitalhub_runtime_python import handler


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


def init_scorer(context, factor=1):
    """Runs once per serve replica: what it leaves in user_data every request uses."""
    context.user_data.factor = factor


def scorer(context, event):
    """Serve: score the posted values with the replica's factor."""
    values = event.json()["values"]
    return {"scores": [value * context.user_data.factor for value in values],
            "replica": context.replica}
