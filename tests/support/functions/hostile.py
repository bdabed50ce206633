"""Handlers written by an attacker: each tries to harm the host through the runtime's calls.
Run by tests/security (real containers) and tests/unit/test_run_quotas.py (locally)."""

import os


def _call(project):
    return project._call  # the proxies' channel to the host, as a handler can reach it


def flood_uploads(project, count=2000):
    """Begin uploads and never finish them; what the host refused, and its message."""
    from hxpy.runtime import calls

    call, accepted, refused, message = _call(project), 0, 0, ""
    for index in range(count):
        try:
            call(calls.UPLOAD_BEGIN, f"file-{index}")
            accepted += 1
        except Exception as exc:  # the refusal, caught: the session must survive it
            refused += 1
            message = message or str(exc)
    return {"accepted": accepted, "refused": refused, "message": message}


def endless_artifact(project, swallow=False):
    """Log an artifact read from /dev/zero: it never ends."""
    try:
        project.log_artifact(name="zeros", source="/dev/zero")
    except Exception as exc:
        if not swallow:
            raise
        return f"swallowed: {exc}"
    return "logged"


def print_lots(megabytes=40):
    """Print far past the log cap, first lifting the container's own capture cap."""
    try:
        import hxpy.server as server

        current = server._current
        if current is not None:
            current._output._cap = 1 << 31
    except ImportError:
        pass
    print("HEAD-OF-THE-LOG")
    line = "x" * 1023
    for _ in range(megabytes << 10):
        print(line)
    print("TAIL-OF-THE-LOG")
    return megabytes


def foreign_output(project, key):
    """Return another project's entity key as an output."""
    from hxpy.runtime.proxies import Entity

    parts = key[len("store://"):].split("/")
    name, _, entity_id = parts[3].partition(":")
    return Entity({"key": key, "project": parts[0], "entity_type": parts[1], "kind": parts[2],
                   "name": name, "id": entity_id}, _call(project))


def odd_kind(project, kind):
    """Log an artifact of a kind that is a path."""
    project.log_artifact(name="odd", kind=kind)
    return "logged"


def leak_secret(project, run):
    """Put the secret it was given everywhere the runtime keeps text."""
    secret = os.environ["LEAKED_TOKEN"]
    run.log_metric(f"metric-{secret}", 1)
    project.log_artifact(name="leaky", note=f"it is {secret}",
                         nested={"deep": [secret], f"key-{secret}": 1})
    print(f"the token is {secret}")
    return {"token": secret, "nested": [{"again": secret}], f"named-{secret}": 1}


def leak_secret_in_error():
    """Raise an error whose message holds the secret."""
    raise ValueError(f"failed with {os.environ['LEAKED_TOKEN']}")


def big_call(megabytes=200):
    """Send one call frame of ``megabytes`` MiB to the host."""
    from hxpy.runtime import calls
    from hxpy.server import call_host

    call_host(calls.UPLOAD_CHUNK, "no-such-upload", b"x" * (megabytes << 20))
    return "sent"


def small(x=1):
    """An honest handler (a run of another project)."""
    return x + 1
