# The design document's runtime examples, as its text writes them.
from digitalhub_runtime_python import handler


def func1(param1):
    return f"hello {param1}"


@handler(outputs=["dataitem", "label"])
def func2(di, param1):
    df = di.as_df()
    df["label"] = param1
    return df, param1


def always_fails(param1):
    raise ValueError(f"no good: {param1}")
