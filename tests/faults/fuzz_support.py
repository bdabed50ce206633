"""What the wire fuzz tests share: how many examples, the hostile bytes, a hostile server.

How many examples: each test asks :func:`fuzz_settings` for ``n`` examples. In CI (the
default) that is ``n``, derandomized, so a run is repeatable; with ``HYPOTHESIS_PROFILE=fuzz``
(``make fuzz``) it is ``n`` times :data:`FUZZ_SCALE`, randomized, for a long hunt. The
settings are per test: nothing here changes the profile of the rest of the suite.

The hostile bytes come in three layers, each built from the one below:

* **bodies**: what a frame holds: noise, msgpack of every shape (maps without a ``type``,
  arrays, scalars), unknown ext codes, known ext codes around noise or around payloads that
  are nearly right (ndarray headers with lying shapes, grid headers with bad columns), and
  values nested past every limit (msgpack's and the ext decoders' own recursion);
* **framed**: the bodies behind honest or lying length prefixes, buffer frames, prefixes
  beyond the cap, noise between frames;
* **streams**: several of those in a row, cut anywhere.

:class:`HostileLauncher` starts "servers" that are threads on a real Unix socket: each one
says welcome (or sends hostile bytes instead of it) and answers a batch with the hostile
bytes of the test, then hangs up, so a real :class:`~pyhost.session.blocking.Session`
meets them through its real transport.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import threading
from typing import Any

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hxpy import codec, protocol, wire
from pyhost.launchers.base import Endpoint, ExitStatus, Instance, Launcher, LaunchSpec

FUZZ_SCALE = 25
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "")

settings.register_profile(
    "wire-fuzz-ci", derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example])
settings.register_profile(
    "wire-fuzz", parent=settings.get_profile("wire-fuzz-ci"), derandomize=False)


def fuzz_settings(examples: int) -> settings:
    """The settings of a fuzz test that runs ``examples`` examples in CI (see the module)."""
    if PROFILE == "fuzz":
        return settings(settings.get_profile("wire-fuzz"), max_examples=examples * FUZZ_SCALE)
    return settings(settings.get_profile("wire-fuzz-ci"), max_examples=examples)


# -- bodies -----------------------------------------------------------------------------------

# The largest message the readers under test take: small, so its bounds are cheap to reach.
CAP = 1 << 16

_KNOWN = sorted(int(code) for code in codec.ExtCode)
unknown_codes = st.integers(0, 127).filter(lambda code: code not in _KNOWN)

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=True) | st.text(max_size=12) | st.binary(max_size=12))


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Small trees: drawing big ones costs more than feeding them does (deep_bodies go deep).
    return st.recursive(
        leaves,
        lambda children: (st.lists(children, max_size=3)
                          | st.dictionaries(st.text(max_size=6) | st.binary(max_size=3),
                                            children, max_size=3)),
        max_leaves=6)


plain_values = _values(scalars)


def _ndarray_payload(dtype: str, shape: Any, order: Any, out_of_band: bool, raw: bytes) -> bytes:
    fields: list[Any] = [dtype, shape, order] + ([True] if out_of_band else [])
    header = msgpack.packb(fields)
    start = -(-(4 + len(header)) // 16) * 16
    return struct.pack("<I", len(header)) + header + bytes(start - 4 - len(header)) + raw


ndarray_payloads = st.builds(
    _ndarray_payload,
    st.sampled_from(["<i8", "|u1", "<f8", "|b1", "<M8[us]", "|S3", "<U2", "|O", ">i4", "<c16",
                     "V8", "float128", "<i8,<f8"]) | st.text(max_size=8),
    st.lists(st.integers(-2, 2**40), max_size=3) | scalars,
    st.sampled_from(["C", "F", "X"]) | scalars,
    st.booleans(),
    st.binary(max_size=64),
)


def _ext(code: int, payload: bytes) -> msgpack.ExtType:
    return msgpack.ExtType(code, payload)


def packed(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# Ext values whose payload is noise, msgpack of any shape, or nearly what the code expects.
ext_values = st.one_of(
    st.builds(_ext, unknown_codes, st.binary(max_size=16)),
    st.builds(_ext, st.sampled_from(_KNOWN), st.binary(max_size=32)),
    st.builds(_ext, st.sampled_from(_KNOWN), plain_values.map(packed)),
    st.builds(_ext, st.just(int(codec.ExtCode.NDARRAY)), ndarray_payloads),
)

_field = ext_values | scalars
_column = st.fixed_dictionaries(
    {"name": st.text(max_size=3) | scalars,
     "enc": st.sampled_from(["list", "text", "array", "category", "range", "?"]) | scalars},
    optional={"meta": plain_values, "cells": st.lists(_field, max_size=3), "data": _field,
              "na": _field, "codes": _field, "offsets": _field,
              "categories": st.fixed_dictionaries({"enc": st.just("list"),
                                                   "cells": st.lists(_field, max_size=3)}),
              "tz": scalars, "dtype": scalars, "ordered": scalars})
_pandas = st.fixed_dictionaries(
    {}, optional={"index": st.fixed_dictionaries(
        {"enc": st.sampled_from(["range", "values", "multi", "?"])},
        optional={"start": scalars, "stop": scalars, "step": scalars,
                  "column": _column | scalars, "levels": st.lists(_column, max_size=2),
                  "names": st.lists(scalars, max_size=2)}),
                  "columns": plain_values, "kind": scalars})
grid_headers = st.fixed_dictionaries(
    {"meta": st.dictionaries(st.text(max_size=4), scalars, max_size=2) | scalars,
     "rows": st.integers(-1, 3) | st.integers(0, 2**63) | scalars,
     "cols": st.lists(_column, max_size=3) | scalars},
    optional={"pandas": _pandas | scalars})
grid_values = grid_headers.map(lambda header: _ext(int(codec.ExtCode.GRID), packed(header)))

def _named(name: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` under a name: hypothesis spells a strategy out in reports, and these
    would take hundreds of kB."""
    def draw(draw_from: st.DrawFn) -> Any:
        return draw_from(strategy)

    draw.__name__ = draw.__qualname__ = name
    return st.composite(draw)()


grid_values = _named("grid_values", grid_values)
hostile_values = _named("hostile_values", _values(scalars | ext_values | grid_values))


def nested_lists(depth: int) -> bytes:
    """``[[[...nil...]]]``, ``depth`` arrays deep."""
    return b"\x91" * depth + b"\xc0"


def nested_maps(depth: int) -> bytes:
    """``{"k": {"k": ...nil...}}``, ``depth`` maps deep."""
    return b"\x81\xa1k" * depth + b"\xc0"


def nested_grids(depth: int) -> bytes:
    """A grid whose meta holds a grid whose meta holds... ``depth`` grids deep: each level is
    decoded by a nested call of the grid decoder, from a few bytes each."""
    inner = packed({"meta": {}, "rows": 0, "cols": []})
    for _ in range(depth):
        inner = packed({"meta": {"m": _ext(int(codec.ExtCode.GRID), inner)}, "rows": 0,
                         "cols": []})
    return inner


deep_bodies = st.one_of(
    st.integers(1, 3000).map(nested_lists),
    st.integers(1, 3000).map(nested_maps),
    st.integers(1, 400).map(nested_grids),
)

# Messages a server would take for requests or replies, with hostile members.
shaped_messages = _named("shaped_messages", st.fixed_dictionaries(
    {"type": st.sampled_from([protocol.RESULT, protocol.ERROR, protocol.CALL, protocol.OUTPUT,
                              protocol.WELCOME, protocol.REFUSED, protocol.BATCH, "?"])
     | hostile_values},
    optional={"id": hostile_values, "batch": hostile_values, "kind": hostile_values,
              "error": hostile_values, "output": hostile_values, "truncated": hostile_values,
              "value": hostile_values, "text": hostile_values, "method": hostile_values,
              "args": hostile_values, "kwargs": hostile_values, "reason": hostile_values,
              "ops": hostile_values, "timeout": hostile_values, "stream": hostile_values,
              "values": hostile_values}))

# Bodies that are no message at all: no map with a "type" string in one piece.
garbage_bodies = st.one_of(
    st.binary(max_size=64),
    hostile_values.map(packed),
    deep_bodies,
    # a message with bytes after it, or cut short
    st.tuples(shaped_messages.map(packed), st.binary(min_size=1, max_size=8)).map(b"".join),
    st.tuples(shaped_messages.map(packed), st.integers(1, 64)).map(
        lambda cut: cut[0][:max(len(cut[0]) - cut[1], 0)]),
)
bodies = garbage_bodies | shaped_messages.map(packed)


# -- framed, and streams ----------------------------------------------------------------------


def framed(body: bytes) -> bytes:
    return wire.HEADER.pack(len(body)) + body


def _lying(body: bytes, delta: int) -> bytes:
    return wire.HEADER.pack(max(len(body) + delta, 0) & 0x7FFF_FFFF) + body


def _buffer(data: bytes) -> bytes:
    return wire.HEADER.pack(len(data) | wire.BUFFER_FLAG) + data


beyond_cap = st.integers(CAP + 1, 2**32 - 1).map(wire.HEADER.pack)

def _pieces(frame_bodies: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        frame_bodies.map(framed),
        st.tuples(frame_bodies, st.integers(-8, 8) | st.integers(-(2**20), 2**20)).map(
            lambda lie: _lying(*lie)),
        st.binary(max_size=CAP // 4).map(_buffer),
        beyond_cap,
        st.binary(min_size=1, max_size=8),
    )


@st.composite
def streams(draw: st.DrawFn, frame_bodies: st.SearchStrategy[bytes] = bodies) -> bytes:
    """A few pieces in a row (frames of ``frame_bodies``, honest or not, and noise), maybe
    cut short."""
    stream = b"".join(draw(st.lists(_pieces(frame_bodies), min_size=1, max_size=5)))
    if draw(st.booleans()):
        stream = stream[:draw(st.integers(0, len(stream)))]
    return stream


# -- a hostile server on a real socket --------------------------------------------------------


class HostileInstance(Instance):
    """A thread on a Unix socket that shakes hands (or not) and then sends ``hostile``."""

    def __init__(self, spec: LaunchSpec, hostile: bytes | None, instead_of_welcome: bool
                 ) -> None:
        self._dir = tempfile.mkdtemp(prefix="hxfz-")
        path = os.path.join(self._dir, "s.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._listener.settimeout(10)
        self.id = f"hostile-{os.path.basename(self._dir)}"
        self.endpoint = Endpoint("unix", path)
        self._key = spec.key
        self._hostile = hostile
        self._instead_of_welcome = instead_of_welcome
        self._ended: ExitStatus | None = None
        self._hung_up = threading.Event()  # set when the "server" is gone, as a process ends
        self._thread = threading.Thread(target=self._serve, name="hostile", daemon=True)
        self._thread.start()

    def poll(self) -> ExitStatus | None:
        return self._ended

    def wait(self, timeout: float) -> ExitStatus | None:
        self._hung_up.wait(timeout)
        return self._ended

    def kill(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass

    def cleanup(self) -> None:
        self.kill()
        self._thread.join(10)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            self._end(ExitStatus(1, error="nobody connected"))
            return
        try:
            with conn:
                conn.settimeout(10)
                self._converse(conn)
        except OSError:
            pass
        finally:
            self._end(ExitStatus(0))

    def _end(self, status: ExitStatus) -> None:
        if self._ended is None:
            self._ended = status
        self._hung_up.set()

    def _converse(self, conn: socket.socket) -> None:
        hello = wire.recv_message(conn)
        assert protocol.check_hello(hello, self._key) is None, "the host's hello is wrong"
        if self._hostile is not None and self._instead_of_welcome:
            self._send_and_hang_up(conn, self._hostile)
            return
        wire.send_message(conn, {"type": protocol.WELCOME, "version": protocol.PROTOCOL_VERSION})
        reader = wire.FrameReader(conn, wire.DEFAULT_MAX_FRAME)
        while True:
            try:
                body, buffers = reader.read()
            except wire.PeerClosed:
                return
            batch = codec.decode(body, buffers)
            if self._hostile is not None:
                self._send_and_hang_up(conn, self._hostile)
                return
            wire.send(conn, protocol.pack_result(batch["id"], "", False, codec.encode(2)))


    def _send_and_hang_up(self, conn: socket.socket, data: bytes) -> None:
        try:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
            self._end(ExitStatus(0))
            # Wait for the host to hang up too (it must, at once): closing with its unread
            # bytes still queued would reset the connection before it read what was sent.
            while conn.recv(1 << 16):
                pass
        except OSError:
            pass


class HostileLauncher(Launcher):
    """Each start takes the next hostile reply from ``script`` (None: a benign server that
    answers every batch with the value 2); once it is empty, every server is benign."""

    name = "hostile"

    def __init__(self, script: list[bytes | None], instead_of_welcome: bool = False) -> None:
        self.script = list(script)
        self.instead_of_welcome = instead_of_welcome
        self.started: list[HostileInstance] = []

    def start(self, spec: LaunchSpec) -> HostileInstance:
        hostile = self.script.pop(0) if self.script else None
        instance = HostileInstance(spec, hostile, self.instead_of_welcome)
        self.started.append(instance)
        return instance
