# An ETL in the shape of DigitalHub's documentation: one function collects a CSV dataitem
# into a table, the next one filters it. Written as the SDK's users write handlers.
import pandas as pd
from digitalhub_runtime_python import handler


@handler(outputs=["dataset"])
def downloader(project, url):
    # read the source as a table and hand it on as an output
    df = url.as_df(file_format="csv", sep=";")
    return df


@handler(outputs=["filtered"])
def process(project, di, min_value: int = 10):
    df = di.as_df()
    kept = df[df["value"] >= min_value].reset_index(drop=True)
    project.log_dataitem(name="summary", kind="table",
                         data=pd.DataFrame({"rows": [len(kept)]}))
    return kept
