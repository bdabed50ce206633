"""Every error pyhost raises, rooted at :class:`PyHostError`.

The tree::

    PyHostError
     ├── PythonError            user code raised in the container (remote type, message, traceback)
     ├── MarshalError           a value cannot cross the channel (names the type and where it sits)
     ├── SessionTimeout         also a builtin TimeoutError; says whether soft or hard
     ├── SessionClosed          we closed the session; it was used afterwards
     ├── SessionDied            the container went away under us (exit code, OOM, kill, the
     │                          engine restarted or stopped)
     ├── ProtocolError          the peer broke the wire contract (bad frame, key, version)
     ├── ConfigurationError     also a builtin ValueError: a bad option, path or deployment
     │                          setting, found before anything starts
     ├── EngineUnavailable      no Docker engine answers, or it refused a request
     ├── ImageNotFound          the session image is missing and could not be chosen
     ├── ImageBuildError        building an image (or its Debian base) failed
     ├── InstallError           installing a system package failed (not root, no apt, apt failed)
     ├── NotInCatalog           also a builtin LookupError: no such project, function, run or
     │                          entity in the catalog
     ├── CatalogUnavailable     the catalog or the store failed (its error attached)
     └── ServiceUnavailable     also a builtin ConnectionError: no replica of a serve run
                                answered

Lower-layer errors (``OSError``, ``docker.errors``, ``msgpack`` exceptions) are translated at
each boundary with ``raise ... from exc`` and never reach users untranslated; the Docker
SDK's in one place, ``pyhost.launchers.docker.client.engine_errors``. Only subclasses are
raised, never ``PyHostError`` itself. A message that quotes a lower layer's error quotes it
through :func:`short`, so every wing cuts it the same way.
"""

from __future__ import annotations

from hxpy.codec import MarshalError as _CodecMarshalError

__all__ = [
    "CatalogUnavailable",
    "ConfigurationError",
    "EngineUnavailable",
    "ImageBuildError",
    "ImageNotFound",
    "InstallError",
    "MarshalError",
    "NotInCatalog",
    "ProtocolError",
    "PyHostError",
    "PythonError",
    "SessionClosed",
    "SessionDied",
    "ServiceUnavailable",
    "SessionTimeout",
    "short",
]

_SHORT_MAX = 300
_SHORT_HEAD = 100  # what was being done; the rest of the room goes to the end, the cause
_CUT = " ... "


class PyHostError(Exception):
    """Root of every error pyhost raises."""


class PythonError(PyHostError):
    """User code raised an exception inside the container.

    Attributes:
        remote_type: qualified name of the remote exception class, e.g. ``ZeroDivisionError``.
        remote_message: ``str()`` of the remote exception.
        remote_traceback: the remote traceback as text.
        output: what the batch wrote to stdout/stderr before it failed.
    """

    def __init__(self, remote_type: str, remote_message: str, remote_traceback: str,
                 output: str = "") -> None:
        super().__init__(remote_type, remote_message, remote_traceback)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.output = output

    def __str__(self) -> str:
        head = f"{self.remote_type}: {self.remote_message}"
        if not self.remote_traceback:
            return head
        return f"{head}\n\nRemote traceback:\n{self.remote_traceback.rstrip()}"


class MarshalError(PyHostError, _CodecMarshalError):
    """A value cannot be marshalled; the message names its type and where it sits.

    It is also an ``hxpy.codec.MarshalError``, so code written against the shared codec
    catches it too.
    """


class SessionTimeout(PyHostError, TimeoutError):
    """A batch ran past the session timeout.

    Attributes:
        kind: ``"soft"`` when user code was interrupted and the namespace kept, ``"hard"``
            when the container was killed.
        seconds: the timeout that expired.
    """

    def __init__(self, message: str, kind: str = "hard", seconds: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.seconds = seconds


class SessionClosed(PyHostError):
    """The session was closed by its owner and cannot be used any more."""


class SessionDied(PyHostError):
    """The container ended or the connection broke while the session was in use.

    Attributes:
        exit_code: the container's exit code when it is known.
        oom_killed: whether the engine reports the container was killed for memory.
        engine_lost: whether the container went with its engine (the engine restarted,
            stopped, or stopped answering); the message says which.
    """

    def __init__(self, message: str, exit_code: int | None = None,
                 oom_killed: bool = False, engine_lost: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.engine_lost = engine_lost


class ProtocolError(PyHostError):
    """The peer broke the wire contract: a malformed or oversized frame, wrong key or version."""


class EngineUnavailable(PyHostError):
    """No Docker engine answers, or the engine refused a request."""


class ImageNotFound(PyHostError):
    """No usable session image is present; ``pyhost image build`` makes one."""


class ConfigurationError(PyHostError, ValueError):
    """An option, path or deployment setting cannot work; raised before anything starts.

    The message names the option (or path) and what to do instead. It is also a
    ``ValueError``, which is what a bad argument is.
    """


class ImageBuildError(PyHostError):
    """Building an image failed: the sources are missing, no base could be had, or a build
    step failed (the message ends with the build's last lines)."""


class InstallError(PyHostError):
    """A system package could not be installed: not root, no ``apt-get``, or apt failed (the
    tail of its output attached)."""


class NotInCatalog(PyHostError, LookupError):
    """No project, function, run or entity of that name, id or key is in the catalog."""


class CatalogUnavailable(PyHostError):
    """The catalog or the store failed: the database cannot be opened or written, a file of
    the store cannot be read (the backend's error is the cause)."""


class ServiceUnavailable(PyHostError, ConnectionError):
    """No replica of a serve run answered a call (none listens, or each one refused the
    connection)."""


def short(exc: BaseException | str, first_line: bool = False) -> str:
    """An error's text on one line of at most 300 characters, to quote it in a message of
    ours; its type name when the text is empty.

    A longer text loses its middle (marked `` ... ``), never its end: a lower layer's error
    says what it was doing first and why it failed last (``error setting rlimits for ready
    process: error setting rlimit type 7: operation not permitted``).

    Args:
        exc: the error to quote, or the text of one.
        first_line: quote only its first line, for errors whose message goes on with a log
            (a build's last lines); otherwise every line, joined by spaces.
    """
    text = str(exc).strip()
    if first_line:
        text = text.splitlines()[0] if text else text
    text = " ".join(text.split()) or (type(exc).__name__ if isinstance(exc, BaseException)
                                      else "(no message)")
    if len(text) <= _SHORT_MAX:
        return text
    tail = _SHORT_MAX - _SHORT_HEAD - len(_CUT)
    return text[:_SHORT_HEAD].rstrip() + _CUT + text[-tail:].lstrip()
