"""Serve handlers the serve tests run (unit tests with the process launcher, integration tests
in containers)."""

import os
import socket


def init_context(context, greeting="hello", factor=1):
    """Runs once per replica: what it leaves in user_data the handler uses."""
    context.user_data.greeting = greeting
    context.user_data.factor = factor
    context.logger.info("replica %d initialised", context.replica)


def handler(context, event):
    """Echo the request, with the replica that answered and what init_function left."""
    if event.path == "/boom":
        raise ValueError("the handler broke on purpose")
    if event.path == "/print":
        print("printed by the handler")
        context.logger.warning("logged by the handler")
        return "ok"
    if event.path == "/status":
        return {"teapot": True}, 418, {"X-Served-By": "test"}
    if event.path == "/text":
        return "plain text"
    if event.path == "/bytes":
        return b"\x00\x01"
    if event.path == "/json":
        return {"parsed": event.json()}
    if event.path == "/bad-return":
        return {1, 2}
    if event.path == "/project":
        context.run.log_metric("served", 1)  # a call to the host, from a worker thread
        return {"project": context.project.name}
    return {
        "replica": context.replica,
        "hostname": os.environ.get("HOSTNAME") or socket.gethostname(),
        "greeting": getattr(context.user_data, "greeting", None),
        "factor": getattr(context.user_data, "factor", None),
        "method": event.method,
        "path": event.path,
        "fields": event.fields,
        "content_type": event.content_type,
        "body": event.body.decode("utf-8", "replace"),
    }


def hello(context, event):
    """The trivial handler of the benchmark."""
    return "hello"


def needs_more(context, event, extra):
    """A serve handler with an argument nobody gives."""
    return extra


def init_fails(context):
    raise RuntimeError("init_function failed on purpose")


async def async_handler(context, event):
    """An async def handler: awaited on the replica's event loop."""
    import asyncio
    import threading

    await asyncio.sleep(0)
    return {"thread": threading.current_thread().name, "replica": context.replica}
