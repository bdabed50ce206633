"""The server's side of the wire, fuzzed against a real server in a real container.

* Strangers (before the handshake): whatever a client that does not know the key sends, it
  is refused or dropped within the hello timeout, the server keeps listening, and the real
  host then gets in. One container serves every example.
* The host's connection, after a proper handshake: a frame that is whole but malformed is
  answered with an error and the server goes on (the next batch works); a stream that breaks
  the framing is answered with an error or the server hangs up and exits.
* Hostile user code writing straight to the server's connection: the host session raises
  a pyhost error (``ProtocolError`` or ``SessionDied`` for what is no reply at all) and
  starts afresh in a new container.

Every malformed frame derived from a batch that would write a marker file into /io (and
print a marker) is checked never to have run; a test shows the check sees a whole one run.
Containers are reused while their server lives, so the examples cost seconds, not minutes.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from hxpy import codec, protocol, wire
from pyhost import py
from pyhost.errors import ProtocolError, PyHostError, SessionDied, SessionTimeout
from pyhost.launchers.base import Instance
from pyhost.launchers.docker.launcher import DockerLauncher
from pyhost.session.conversation import encode_eval, encode_exec
from pyhost.session.transport import connect
from tests.faults.fuzz_support import (
    bodies,
    framed,
    fuzz_settings,
    nested_grids,
    packed,
    shaped_messages,
    streams,
)
from tests.integration.conftest import (  # noqa: F401  (fixtures, found by name)
    client,
    io_dir,
    no_leftover_containers,
)
from tests.support.raw import start_raw

pytestmark = pytest.mark.docker

KEY = "fuzz-" + secrets.token_urlsafe(24)  # no example can guess it
HELLO_TIMEOUT = 1.0
TIMEOUT = 2.0  # a session's batch timeout: how long a host may wait for an unfinished reply
MARKER = "fuzz-marker"
MARKER_TEXT = "FUZZ-MARKER-RAN"
MARKER_BATCH = protocol.pack_batch(1, None, [
    encode_exec(f"open('/io/{MARKER}', 'w').write('ran'); print({MARKER_TEXT!r})"),
    encode_eval("1")])


def _server_settings(examples: int, shrink: bool = True) -> settings:
    """The fixtures are shared by all examples on purpose: one container, one io dir. Where
    each example costs a container, a failure is reported as found, not shrunk for minutes."""
    base = fuzz_settings(examples)
    phases = base.phases if shrink else [phase for phase in base.phases
                                         if phase is not Phase.shrink]
    return settings(base, phases=phases,
                    suppress_health_check=[*base.suppress_health_check,
                                           HealthCheck.function_scoped_fixture])


# -- malformed versions of the marker batch ---------------------------------------------------

def _marker_map(**changes: Any) -> bytes:
    message = msgpack.unpackb(MARKER_BATCH)
    message.update(changes)
    return packed(message)


# Whole frames: each is answered with an error, and nothing in it runs.
whole_marker_frames = st.one_of(
    st.integers(1, len(MARKER_BATCH) - 1).map(lambda cut: framed(MARKER_BATCH[:cut])),
    st.binary(min_size=1, max_size=8).map(lambda junk: framed(MARKER_BATCH + junk)),
    st.integers(0, 127).filter(lambda code: code not in set(map(int, codec.ExtCode))).map(
        lambda code: framed(_marker_map(id=msgpack.ExtType(code, b"")))),
    st.just(framed(_marker_map(id=msgpack.ExtType(int(codec.ExtCode.GRID),
                                                  nested_grids(300))))),
    st.just(framed(_marker_map(type="Batch"))),
    st.just(framed(_marker_map(id=msgpack.ExtType(int(codec.ExtCode.MARKER), b"")))),
    st.just(framed(_marker_map(id=[1]))),
    st.just(wire.HEADER.pack(4 | wire.BUFFER_FLAG) + b"\0\0\0\0" + framed(MARKER_BATCH)),
)
# Streams that break the framing around it: the server must refuse or hang up.
broken_marker_streams = st.one_of(
    st.integers(1, 64).map(lambda more: wire.HEADER.pack(len(MARKER_BATCH) + more)
                           + MARKER_BATCH),
    st.just(wire.HEADER.pack(len(MARKER_BATCH) | wire.BUFFER_FLAG) + MARKER_BATCH),
    st.just(wire.HEADER.pack(0x7FFF_FFFF) + framed(MARKER_BATCH)),
    st.integers(1, len(MARKER_BATCH) + 3).map(lambda cut: framed(MARKER_BATCH)[:cut]),
)


def _runs_code(body: bytes) -> bool:
    """Whether ``body`` is a batch with an op that would run source code."""
    try:
        message = codec.decode(body)
    except codec.MarshalError:
        return False
    ops = message.get("ops") if isinstance(message, dict) else None
    return isinstance(ops, list) and any(
        isinstance(op, list) and op[:1] in (["exec"], ["eval"]) for op in ops)


whole_frames = st.one_of(bodies.filter(lambda body: not _runs_code(body)).map(framed),
                         whole_marker_frames)


def _no_marker(io: str, replies: list[Any]) -> None:
    assert not os.path.exists(os.path.join(io, MARKER)), "code from a malformed frame ran"
    assert MARKER_TEXT not in repr(replies), "code from a malformed frame ran"


# -- one real server, kept while it lives -----------------------------------------------------

class Servers:
    """Starts a real server when the last one is gone; removes every one it started."""

    def __init__(self, io: str) -> None:
        self.io = io
        self.started: list[Instance] = []
        self.instance: Instance | None = None
        self.conn: socket.socket | None = None  # greeted, when it is
        self.reader: wire.FrameReader | None = None
        self.batches = 100

    def server(self) -> Instance:
        """The live server (a new one if the last one exited)."""
        if self.instance is None or self.instance.poll() is not None:
            self.drop()
            instance, sock = start_raw(DockerLauncher(), KEY, io_dir=self.io,
                                       env={"HXPY_HELLO_TIMEOUT": str(HELLO_TIMEOUT)})
            sock.close()
            self.started.append(instance)
            self.instance = instance
        return self.instance

    def stranger(self) -> socket.socket:
        """A new connection to the live server, not greeted."""
        instance = self.server()
        sock = connect(instance.endpoint, time.monotonic() + 30,
                       lambda: instance.poll() is None).sock  # type: ignore[attr-defined]
        sock.settimeout(HELLO_TIMEOUT + 5)
        return sock

    def host(self) -> socket.socket:
        """The greeted connection of the live server (the handshake done with its key)."""
        if self.conn is not None and self.instance is not None \
                and self.instance.poll() is None:
            return self.conn
        if self.conn is not None:  # its server is gone
            self.drop()
        if self.conn is None:
            sock = self.stranger()  # the live server (not greeted yet), or a new one
            wire.send_message(sock, {"type": protocol.HELLO,
                                     "version": protocol.PROTOCOL_VERSION, "key": KEY})
            assert wire.recv_message(sock)["type"] == protocol.WELCOME
            self.conn, self.reader = sock, wire.FrameReader(sock, 1 << 20)
        return self.conn

    def reply(self) -> dict[str, Any]:
        assert self.reader is not None
        body, buffers = self.reader.read()
        message = codec.decode(body, buffers)
        assert isinstance(message, dict)
        return message

    def probe(self) -> None:
        """A batch on the host's connection is answered: the server lives, in step."""
        self.batches += 1
        self.host().sendall(framed(protocol.pack_batch(self.batches, 10, [encode_eval("6*7")])))
        reply = self.reply()
        assert (reply["type"], reply["id"], reply["value"]) == ("result", self.batches, 42)

    def drop(self) -> None:
        """Forget the live server (it is removed at the end)."""
        if self.conn is not None:
            self.conn.close()
        self.conn = self.reader = None
        if self.instance is not None:
            self.instance.cleanup()
        self.instance = None

    def close(self) -> None:
        self.drop()
        for instance in self.started:
            instance.cleanup()


@pytest.fixture
def fuzz_servers(client, io_dir) -> Iterator[Servers]:  # noqa: F811
    os.makedirs(io_dir, exist_ok=True)
    servers = Servers(io_dir)
    yield servers
    servers.close()


# -- strangers --------------------------------------------------------------------------------

def _hellos() -> st.SearchStrategy[bytes]:
    return st.fixed_dictionaries(
        {"type": st.just(protocol.HELLO)},
        optional={"version": st.just(protocol.PROTOCOL_VERSION) | st.integers(-(2**63), 2**64 - 1),
                  "key": st.text(max_size=40) | st.binary(max_size=8),
                  "columns": st.lists(st.text(max_size=5), max_size=2)}).map(packed)


stranger_streams = st.one_of(
    streams(),
    _hellos().map(framed),
    st.tuples(_hellos().map(framed), whole_marker_frames).map(b"".join),
    whole_marker_frames,
    broken_marker_streams,
)


@_server_settings(60)
@given(stream=stranger_streams)
@example(stream=framed(MARKER_BATCH))  # a batch instead of a hello
@example(stream=framed(packed({"type": protocol.HELLO, "version": protocol.PROTOCOL_VERSION,
                                "key": msgpack.ExtType(int(codec.ExtCode.GRID),
                                                       nested_grids(300))})))
@example(stream=wire.HEADER.pack(64 * 1024 + 1))
def test_strangers_are_refused_and_the_host_still_gets_in(fuzz_servers: Servers,
                                                         stream: bytes) -> None:
    sock = fuzz_servers.stranger()
    started = time.monotonic()
    try:
        try:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # refused and closed while we were still sending
            pass
        replies = _replies_until_closed(sock)
    finally:
        sock.close()
    assert time.monotonic() - started < HELLO_TIMEOUT + 4
    assert [reply.get("type") for reply in replies] in ([], [protocol.REFUSED])
    assert fuzz_servers.server().poll() is None, "a stranger's bytes ended the server"
    _no_marker(fuzz_servers.io, replies)


def _replies_until_closed(sock: socket.socket) -> list[Any]:
    reader = wire.FrameReader(sock, 1 << 20)
    replies: list[Any] = []
    while True:
        try:
            body, buffers = reader.read()
        except (wire.PeerClosed, ConnectionResetError):
            return replies
        replies.append(codec.decode(body, buffers))


@pytest.mark.parametrize("pause", [None, 0.3], ids=["silent", "a-byte-now-and-then"])
def test_a_slow_stranger_is_dropped_and_the_host_gets_in(fuzz_servers: Servers,
                                                         pause: float | None) -> None:
    sock = fuzz_servers.stranger()
    started = time.monotonic()
    try:
        if pause is not None:  # a hello, one byte at a time, slower than the deadline
            for byte in framed(packed({"type": protocol.HELLO})):
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    break
                time.sleep(pause)
        replies = _replies_until_closed(sock)
    finally:
        sock.close()
    assert time.monotonic() - started < HELLO_TIMEOUT + 3
    assert [reply.get("type") for reply in replies] in ([], [protocol.REFUSED])
    fuzz_servers.probe()  # the host's hello was taken


# -- the host's own connection ----------------------------------------------------------------

@_server_settings(150)
@given(frames=st.lists(whole_frames, min_size=1, max_size=3))
@example(frames=[framed(packed({"type": protocol.BATCH, "id": msgpack.ExtType(1, b""),
                               "ops": []}))])  # a Marker as the id: the reply failed to pack
@example(frames=[framed(packed({"type": protocol.BATCH, "id": 1,
                               "ops": [["define", "x", 1]]}))])
def test_a_whole_malformed_frame_is_answered_and_the_server_goes_on(fuzz_servers: Servers,
                                                                    frames: list[bytes]) -> None:
    conn = fuzz_servers.host()
    conn.sendall(b"".join(frames))
    replies = []
    for frame in frames:
        (size,) = wire.HEADER.unpack_from(frame)
        if size & wire.BUFFER_FLAG:
            frame = frame[wire.HEADER.size + (size & ~wire.BUFFER_FLAG):]
        try:
            replies.append(fuzz_servers.reply())
        except wire.PeerClosed:
            pytest.fail(f"the server hung up on a whole frame: {frame[:200]!r}")
    for reply in replies:
        assert reply["type"] in (protocol.ERROR, protocol.RESULT), reply
    fuzz_servers.probe()
    _no_marker(fuzz_servers.io, replies)


@_server_settings(12, shrink=False)
@given(stream=st.one_of(broken_marker_streams, streams()))
def test_a_broken_stream_is_refused_or_hung_up_on(fuzz_servers: Servers, stream: bytes) -> None:
    conn = fuzz_servers.host()
    try:
        conn.sendall(stream)
        conn.shutdown(socket.SHUT_WR)  # the host hangs up after it, as a dead host does
    except OSError:
        pass
    replies = _replies_until_closed(conn)
    for reply in replies:
        assert reply.get("type") in (protocol.ERROR, protocol.RESULT), reply
    assert fuzz_servers.instance is not None
    assert fuzz_servers.instance.wait(10) is not None, "the server outlived its host's connection"
    _no_marker(fuzz_servers.io, replies)
    fuzz_servers.drop()


def test_the_marker_check_sees_a_whole_batch_run(fuzz_servers: Servers) -> None:
    fuzz_servers.host().sendall(framed(MARKER_BATCH))
    reply = fuzz_servers.reply()
    assert reply["type"] == protocol.RESULT and MARKER_TEXT in reply["output"]
    with pytest.raises(AssertionError, match="code from a malformed frame ran"):
        _no_marker(fuzz_servers.io, [reply])


# -- hostile user code, and the host session -------------------------------------------------

# ``out`` is where the server's messages go: the host's pipe, or the socket without pipes.
_WRITE_TO_THE_HOST = ("import os, hxpy.server as server\n"
                      "server._current.out.sendall(payload)\n"
                      "if then_exit: os._exit(0)\n")


@_server_settings(10, shrink=False)
@given(payload=st.one_of(streams(), shaped_messages.map(packed).map(framed)),
       then_exit=st.booleans())
@example(payload=framed(nested_grids(300)), then_exit=False)
def test_a_hostile_reply_ends_the_session_with_a_pyhost_error(client, io_dir,  # noqa: F811
                                                              payload: bytes,
                                                              then_exit: bool) -> None:
    os.makedirs(io_dir, exist_ok=True)
    with py(io=io_dir, timeout=TIMEOUT) as session:
        session.eval("None")  # the container is up: what follows is timed
        started = time.monotonic()
        raised: PyHostError | None = None
        try:
            session.define("payload", payload).define("then_exit", then_exit) \
                .exec(_WRITE_TO_THE_HOST).eval("None")
        except PyHostError as exc:  # another exception fails the test
            raised = exc
        # An unfinished frame that the server leaves unfinished (it lives on, waiting for
        # the next batch) is waited for until the batch's deadline: that is the bound.
        assert time.monotonic() - started < TIMEOUT + 2, "the host waited past its deadline"
        if isinstance(raised, (ProtocolError, SessionDied)) or (
                isinstance(raised, SessionTimeout) and raised.kind == "hard"):
            # The container was removed: the session goes on in a new one. (After a reply
            # the session survives, the rest of the hostile bytes may still be queued.)
            assert session.container_id is None
            assert session.eval("1 + 1") == 2


@pytest.mark.parametrize("payload", [framed(b"\xc1"), framed(packed([1, 2])),
                                     wire.HEADER.pack(0x7FFF_FFFF)],
                         ids=["not-msgpack", "not-a-map", "beyond-the-cap"])
def test_a_malformed_reply_is_a_protocol_error_and_a_new_session_works(
        client, io_dir, payload: bytes) -> None:  # noqa: F811
    os.makedirs(io_dir, exist_ok=True)
    session = py(io=io_dir, timeout=TIMEOUT, max_frame=1 << 20)
    with pytest.raises(ProtocolError):
        session.define("payload", payload).define("then_exit", False) \
            .exec(_WRITE_TO_THE_HOST).eval("None")
    assert py(io=io_dir).eval("'a new session'") == "a new session"
