"""The handshake: bringing a server up to a connection that proved the session key, shared
by both sessions and the warm pool.

After the welcome, and before anything else is sent (so before any user code runs), the
launcher takes back what the server needed only to start (:meth:`Instance.connected`), and
the session's secrets go over the channel (a ``secrets`` message) unless the launcher
delivered them itself: they are never in the container's configuration.

The hello and the judgement of the welcome are pure functions, so the blocking session and
the asyncio session speak the same handshake.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

from hxpy import codec, protocol, wire
from hxpy.pipes import Pipes, host_pipes

from ..errors import ProtocolError, SessionDied
from ..launchers.base import Instance, Launcher, LaunchSpec
from .transport import Received, SocketTransport, Transport, connect

__all__ = ["Opened", "check_secrets_reply", "check_welcome", "hello", "open_server",
           "secrets_message"]

log = logging.getLogger("pyhost")

START_TIMEOUT = 60.0


@dataclass
class Opened:
    """A started server with a connection that has passed the handshake."""

    instance: Instance
    transport: Transport
    server_info: dict[str, Any]
    session_id: str
    #: The key this server was started with (kept for checks that it leaks nowhere).
    key: str = field(default="", repr=False)


def hello(key: str, pipes: bool = False) -> bytes:
    """The encoded hello frame body. It asks for text columns as buffers when this process
    has pyarrow to read them with (see ``docs/protocol.md``); with ``pipes``, it says that
    two pipe ends come with it (:mod:`hxpy.pipes`)."""
    message: dict[str, Any] = {"type": protocol.HELLO, "version": protocol.PROTOCOL_VERSION,
                               "key": key}
    if _reads_text_columns():
        message["columns"] = ["text"]
    if pipes:
        message["pipes"] = True
    return codec.encode(message)


@functools.cache
def _reads_text_columns() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def check_welcome(reply: Any, session_id: str) -> dict[str, Any]:
    """The welcome, or the error that the reply means."""
    if isinstance(reply, dict) and reply.get("type") == protocol.WELCOME:
        return reply
    if isinstance(reply, dict) and reply.get("type") == protocol.REFUSED:
        return _raise(ProtocolError(f"session {session_id}: the server refused the connection: "
                                    f"{reply.get('reason')}"))
    return _raise(ProtocolError(f"session {session_id}: expected a welcome, got {reply!r:.200}"))


def secrets_message(values: dict[str, str]) -> bytes:
    """The encoded ``secrets`` message: names and values for user code's environment."""
    return codec.encode({"type": protocol.SECRETS, "id": 0, "values": dict(values)})


def check_secrets_reply(reply: Any, session_id: str) -> None:
    """Accept the server's acknowledgement of the secrets; anything else is an error (an
    older server that does not know the message answers with an error: it must not start
    without the secrets its user code expects).

    Raises:
        ProtocolError: the server did not take them.
    """
    if isinstance(reply, dict) and reply.get("type") == protocol.RESULT:
        return
    detail = reply.get("error", {}).get("message") if isinstance(reply, dict) and \
        isinstance(reply.get("error"), dict) else f"{reply!r:.200}"
    raise ProtocolError(f"session {session_id}: the server did not take the session's "
                        f"secrets ({detail}); its image may predate secrets over the "
                        "channel: rebuild it with `pyhost image build`")


def _raise(exc: Exception) -> Any:
    raise exc


def open_server(launcher: Launcher, spec: LaunchSpec, max_frame: int,
                start_timeout: float = START_TIMEOUT, pipes: bool = True) -> Opened:
    """Start a server with a fresh key, connect and shake hands. With ``pipes``, over a Unix
    socket, the session's messages go over two pipes once the server took them
    (:class:`~pyhost.session.transport.PipeTransport`); otherwise over the socket.

    Raises:
        SessionDied: the server exited or never listened.
        ProtocolError: the handshake failed.
        EngineUnavailable, ImageNotFound: from the launcher.
    """
    spec = replace(spec, key=secrets.token_urlsafe(32))
    started = time.monotonic()
    deadline = started + start_timeout
    instance = launcher.start(spec)
    log.info("session %s: container %s started", spec.session_id, instance.id[:12])
    transport: Transport | None = None
    local: Pipes | None = None
    try:
        try:
            transport, local, (body, buffers) = _handshake(instance, spec.key, deadline,
                                                            max_frame, spec.spin, pipes)
        except (TimeoutError, ConnectionError, OSError, wire.FrameTooLarge) as exc:
            status = instance.poll()
            detail = status.describe() if status else f"{type(exc).__name__}: {exc}"
            raise SessionDied(f"session {spec.session_id}: the server did not start: {detail}",
                              status.exit_code if status else None,
                              status.oom_killed if status else False) from exc
        try:
            reply = codec.decode(body, buffers)
        except codec.MarshalError as exc:
            raise ProtocolError(f"session {spec.session_id}: unreadable frame during the "
                                f"handshake: {exc}") from exc
        info = check_welcome(reply, spec.session_id)
        if local is not None and info.get("pipes") is True:
            assert isinstance(transport, SocketTransport)
            transport, local = transport.over_pipes(local), None
        instance.connected()
        if spec.secrets and not instance.secrets_delivered:
            _send_secrets(transport, spec, deadline)
    except BaseException:
        if transport is not None:
            transport.close()
        instance.cleanup()
        raise
    finally:
        if local is not None:  # the server did not take them
            local.close()
    log.info("session %s: ready in %.3f s", spec.session_id, time.monotonic() - started)
    return Opened(instance, transport, info, spec.session_id, spec.key)


def _send_secrets(transport: Transport, spec: LaunchSpec, deadline: float) -> None:
    """Send the spec's secrets and wait for the server to take them."""
    try:
        transport.send(secrets_message(dict(spec.secrets)))
        body, buffers = transport.recv(max(deadline - time.monotonic(), 0.0))
        reply = codec.decode(body, buffers)
    except (TimeoutError, ConnectionError, OSError, wire.FrameTooLarge,
            codec.MarshalError) as exc:
        raise ProtocolError(f"session {spec.session_id}: sending the session's secrets "
                            f"failed: {type(exc).__name__}: {exc}") from exc
    check_secrets_reply(reply, spec.session_id)


# A port proxy (docker-proxy for a published port) accepts at once and closes the connection
# when the server behind it does not listen yet; that ends before the welcome this way.
_CLOSED_EARLY = (wire.PeerClosed, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def _handshake(instance: Instance, key: str, deadline: float, max_frame: int,
               spin: float, pipes: bool) -> tuple[Transport, Pipes | None, Received]:
    """Connect and say hello; the transport, the host's ends of the pipes sent with the
    hello (if any) and the first reply.

    Over TCP, a connection closed before any reply means "not listening yet" while the
    instance runs and the deadline holds: reconnect after a short, growing pause. A reply,
    even a refusal, is final. Over a Unix socket nothing stands in between, so a close is
    the server's own doing and is not retried.
    """
    delay = 0.005
    while True:
        transport = connect(instance.endpoint, deadline, lambda: instance.poll() is None,
                            max_frame, spin)
        local = None
        try:
            if pipes and instance.endpoint.kind == "unix" and isinstance(transport,
                                                                         SocketTransport):
                local = _hello_with_pipes(transport, key)
            else:
                transport.send(hello(key))
            return transport, local, transport.recv(max(deadline - time.monotonic(), 0.0))
        except _CLOSED_EARLY as exc:
            if local is not None:
                local.close()
            transport.close()
            if (instance.endpoint.kind != "tcp" or time.monotonic() + delay >= deadline
                    or instance.poll() is not None):
                raise
            log.debug("%s closed the connection before the welcome (%s); not listening yet",
                      instance.endpoint, type(exc).__name__)
        except BaseException:
            if local is not None:
                local.close()
            transport.close()
            raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _hello_with_pipes(transport: SocketTransport, key: str) -> Pipes | None:
    """Say hello with the server's ends of two new pipes attached; the host's ends (None
    where pipes cannot be read without blocking: a plain hello then)."""
    made = host_pipes()
    if made is None:
        transport.send(hello(key))
        return None
    local, theirs = made
    try:
        transport.send_with_fds(hello(key, pipes=True), theirs)
    except BaseException:
        local.close()
        raise
    finally:
        for fd in theirs:  # the server has its own copies once they are sent
            os.close(fd)
    return local
