"""Noticing that the Docker engine went away under this process: stopped, or restarted.

A session's container ends with the engine that runs it (an engine without live-restore stops
its containers when it stops). To the session that looks like any crash: its connection
breaks. Two facts tell an engine's fault apart, and :class:`EngineWatch` gathers both:

* the engine does not answer a ping on a connection of its own: it is stopping or down (a
  stopping ``dockerd`` closes its listener first, then stops its containers, and still
  answers on the connections it had until it exits, so only a new connection tells);
* an event stream held open since before the container started broke: the engine stopped
  (and, if it answers again, restarted). The stream asks for the daemon's own events, which
  come almost never; the engine closes it only when it exits.

The watch runs in one daemon thread per engine client (:func:`watch_of`: the launchers of a
process share the client, so one thread). When the engine answers again it reopens
the stream and removes the containers whose removal failed while the engine was away (see
:meth:`EngineWatch.remove_later`); what is left when the process ends, ``pyhost gc`` removes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import docker

from ...errors import EngineUnavailable
from .client import ENGINE_ERRORS
from .engine import ping

__all__ = ["PING_TIMEOUT", "EngineWatch", "watch_of"]

log = logging.getLogger("pyhost")

#: Seconds a ping on a new connection may take before the engine counts as not answering (an
#: engine started by systemd socket activation accepts connections it never serves while it
#: is down).
PING_TIMEOUT = 3.0
_RETRY_MAX = 2.0  # seconds between attempts to reach an engine that went away

_watches: dict[int, EngineWatch] = {}  # by id(client); each watch holds its client
_watches_lock = threading.Lock()


def watch_of(client: docker.DockerClient) -> EngineWatch:
    """The one :class:`EngineWatch` of ``client``'s engine in this process."""
    with _watches_lock:
        watch = _watches.get(id(client))
        if watch is None:
            watch = _watches[id(client)] = EngineWatch(client)
        return watch


class EngineWatch:
    """Watches one engine (the one ``client`` speaks to) for going away; see the module
    docstring."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        self._address = _address(client)
        self._lock = threading.Lock()
        self._breaks: list[float] = []  # when the stream broke (time.time())
        self._pending: list[Callable[[], None]] = []
        # Held while removals run: a start that finds none pending must not go on while the
        # watch's thread is still removing a container whose name the start would take.
        self._removing = threading.Lock()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def mark(self) -> int:
        """Start watching if not yet (the stream is open when this returns, if the engine
        answers); how many times the engine went away so far, for :meth:`went_away`."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._closed.clear()
                self._stream = self._open()
                self._thread = threading.Thread(target=self._run, name="pyhost-engine-watch",
                                                daemon=True)
                self._thread.start()
            return len(self._breaks)

    def went_away(self, mark: int) -> str:
        """What became of the engine since :meth:`mark` returned ``mark``: "" when nothing
        is known, else a sentence for an error message (it restarted; it stopped; it does
        not answer)."""
        with self._lock:
            lost = self._breaks[mark:] if self._thread is not None else []
        problem = self.ping()
        if lost:
            when = time.strftime("%H:%M:%S", time.localtime(lost[0]))
            if problem:
                return (f"the Docker engine stopped at {when} and does not answer "
                        f"({problem})")
            return (f"the Docker engine restarted (it went away at {when} and answers again)")
        if problem:
            return f"the Docker engine is stopping or down (a new connection gets: {problem})"
        return ""

    def ping(self) -> str:
        """Ping the engine on a new connection: "" when it answers, else why not. "" also
        when this client's address is unknown (an ssh or TLS engine): only the stream
        tells then."""
        if self._address is None:
            return ""
        return ping(self._address, timeout=PING_TIMEOUT)

    def wait_answering(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the engine to answer a new connection."""
        deadline = time.monotonic() + timeout
        delay = 0.1
        while self.ping():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(delay, left))
            delay = min(delay * 2, _RETRY_MAX)
        return True

    def remove_later(self, remove: Callable[[], None]) -> None:
        """Call ``remove`` (a container's cleanup) once the engine answers again: it failed
        because the engine was away. A removal that fails then is logged, not retried."""
        with self._lock:
            self._pending.append(remove)

    def close(self) -> None:
        """Stop watching (a later :meth:`mark` starts again)."""
        self._closed.set()
        with self._lock:
            stream, self._stream = self._stream, None
            thread = self._thread
        if stream is not None:
            _close(stream)
        if thread is not None:
            thread.join(timeout=10)

    # -- the thread ----------------------------------------------------------------------

    def _open(self) -> Any:
        """The event stream, or None when the engine does not answer."""
        try:
            return self._client.api.events(filters={"type": "daemon"}, decode=True)
        except (*ENGINE_ERRORS, OSError):
            return None

    def _run(self) -> None:
        delay = 0.1
        while not self._closed.is_set():
            with self._lock:
                stream = self._stream
            if stream is None:
                stream = self._open()
                if stream is None:
                    self._closed.wait(delay)
                    delay = min(delay * 2, _RETRY_MAX)
                    continue
                with self._lock:
                    if self._closed.is_set():  # closed while it opened
                        _close(stream)
                        return
                    self._stream = stream
            delay = 0.1
            self.remove_pending()
            try:
                for _event in stream:
                    pass  # a reload of the daemon's configuration: nothing to us
            except Exception:  # noqa: BLE001 - however it breaks (requests, urllib3, OSError)
                pass
            _close(stream)
            with self._lock:
                self._stream = None
                if self._closed.is_set():
                    return
                self._breaks.append(time.time())
            log.warning("the Docker engine closed its event stream: it stopped or restarted")

    def remove_pending(self) -> None:
        """Do the removals that waited for the engine to answer again. The watch does them
        when it reconnects; a start does them first too, so that a new container never
        meets the name of an old one still waiting (a session's next container is named
        like its last)."""
        with self._removing:
            with self._lock:
                if not self._pending:
                    return
                pending, self._pending = self._pending, []
            for remove in pending:
                try:
                    remove()
                except EngineUnavailable as exc:
                    log.error("removing a container the engine kept while it was away: %s",
                              exc)


def _close(stream: Any) -> None:
    """Close an event stream, broken or not (docker-py's close reaches into the response's
    socket, which a broken one may have lost already)."""
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - closing what is gone: nothing to report
        pass


def _address(client: docker.DockerClient) -> str | None:
    """The address a new connection to ``client``'s engine would use: ``unix://`` and its
    socket, or ``tcp://`` and its host; None for an engine reached over TLS or ssh, which
    would need the client's credentials.

    docker-py keeps a Unix socket's path only in its adapter (its ``base_url`` becomes
    ``http+docker://localhost``), so it is read there.
    """
    api = client.api
    socket_path = getattr(getattr(api, "_custom_adapter", None), "socket_path", None)
    if isinstance(socket_path, str) and socket_path:
        return f"unix://{socket_path}"
    if api.base_url.startswith("http://"):
        return "tcp://" + api.base_url[len("http://"):]
    return None
