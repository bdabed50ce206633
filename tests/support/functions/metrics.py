"""Handlers that log metrics: series with and without steps, several at once, DigitalHub's
keywords, and a flood past the bound."""


def training(run, epochs=3):
    """Each kind of call once; the test reads back what it wrote."""
    for epoch in range(epochs):
        run.log_metric("loss", 1.0 / (epoch + 1))          # steps 0, 1, 2
    run.log_metric("accuracy", 0.5, step=10)
    run.log_metric("accuracy", 0.75, step=20)
    run.log_metrics({"lr": 0.1, "batch": [32, 64]}, step=5)  # one call; a list: two points
    run.log_metric("loss", [0.2, 0.1])                       # steps 3, 4
    run.log_metric("f1", 0.5, single_value=True)             # DigitalHub's keyword
    run.log_metric("f1", 0.9, overwrite=True)                # the series starts again
    return epochs


def refused(run, points=100_000):
    """What the host refuses, each caught: the handler goes on."""
    messages = []
    for call in (lambda: run.log_metric("bad", "0.5"),
                 lambda: run.log_metric("bad", True),
                 lambda: run.log_metric("bad", [1, None]),
                 lambda: run.log_metric("bad", 1, step=-1),
                 lambda: run.log_metric("", 1),
                 lambda: run.log_metrics(["not", "a", "dict"]),
                 lambda: run.log_metric("flood", [0.0] * points),
                 lambda: run.log_metric("flood", 1.0)):
        try:
            call()
            messages.append(None)
        except Exception as exc:  # HostCallError in a session; ConfigurationError locally
            messages.append(str(exc))
    return messages
