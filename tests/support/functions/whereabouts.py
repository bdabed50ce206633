"""A handler that says where it ran and logs an artifact from there (two-node tests)."""

import socket


def whereabouts(project, param1):
    """The task's host name (its container's short id) and an artifact logged from it."""
    path = "/tmp/whereabouts.txt"
    with open(path, "w") as out:
        out.write(f"{param1} from {socket.gethostname()}\n")
    project.log_artifact(name="whereabouts", kind="artifact", source=path)
    return socket.gethostname()
