"""The session against the real hxpy server run as a local process (no Docker, no sandbox):
the conversation, errors and faults, for real."""

import os
import socket
import time

import pytest

from hxpy import codec, protocol, wire
from pyhost import (
    MarshalError,
    ProtocolError,
    PythonError,
    SessionClosed,
    SessionDied,
    SessionTimeout,
)
from tests.support.raw import start_raw
from tests.support.tap import TappedLauncher
from tests.unit.conftest import session


def test_the_design_example(launcher):
    val = (session(launcher).timeout(10).define("a", 100).define("b", 2)
           .exec("def mult(x, y): return x * y\n").eval("mult(a, b)"))
    assert val == 200
    assert launcher.started[0].poll() is not None  # eval closed the session


def test_eval_without_with_closes_the_session(launcher):
    s = session(launcher)
    assert s.eval("1 + 1") == 2
    assert s.closed
    with pytest.raises(SessionClosed):
        s.eval("1")


def test_the_namespace_persists_inside_with(launcher):
    with session(launcher) as s:
        s.exec("counter = 0").eval("None")
        for expected in (1, 2, 3):
            assert s.exec("counter += 1").eval("counter") == expected
        assert len(launcher.started) == 1
    assert launcher.started[0].poll() is not None


def test_one_batch_is_one_frame_each_way(launcher):
    # Counted on the wire by a relay between host and server, not by the session itself.
    tapped = TappedLauncher(launcher)
    with session(tapped) as s:
        s.eval("0")
        (tap,) = tapped.taps
        to_server, to_host = tap.counts()
        assert (to_server, to_host) == (2, 2)  # the hello and the first batch, each answered
        assert s.define("a", 1).define("b", 2).exec("c = a + b").eval("c") == 3
        assert tap.counts() == (to_server + 1, to_host + 1)
        assert (tap.to_server.messages, tap.to_host.messages) == (3, 3)


def test_remote_error_carries_type_message_traceback_and_the_session_survives(launcher):
    with session(launcher) as s:
        s.define("x", 41).eval("None")
        with pytest.raises(PythonError) as info:
            s.exec("def boom():\n    raise KeyError('missing')\n").eval("boom()")
        err = info.value
        assert err.remote_type == "KeyError"
        assert err.remote_message == "'missing'"
        assert "raise KeyError('missing')" in err.remote_traceback
        assert "in boom" in err.remote_traceback
        assert "server.py" not in err.remote_traceback
        assert "KeyError: 'missing'" in str(err) and "Remote traceback" in str(err)
        assert s.eval("x + 1") == 42


def test_eval_accepts_statements_ending_in_an_expression(launcher):
    with session(launcher) as s:
        assert s.eval("y = 5\ny * 2") == 10
        assert s.eval("z = 1") is None
        assert s.eval("z + y") == 6


def test_output_is_captured_and_capped(launcher):
    with session(launcher, output_cap=1000) as s:
        assert s.eval("print('hello'); import sys; print('oops', file=sys.stderr); 7") == 7
        assert s.last_output == "hello\noops\n"
        assert not s.last_output_truncated
        s.eval("for _ in range(10_000): print('x' * 100)")
        assert s.last_output_truncated
        assert s.last_output.startswith("x" * 100)
        assert "truncated by hxpy" in s.last_output
        assert len(s.last_output) < 1200


def test_output_before_an_error_is_kept(launcher):
    with session(launcher) as s:
        with pytest.raises(PythonError) as info:
            s.eval("print('before'); 1/0")
        assert info.value.output == "before\n"

def test_output_written_between_batches_comes_with_the_next_reply(launcher):
    with session(launcher) as s:
        assert s.eval("import sys; out = sys.stdout; print('first'); 1") == 1
        assert s.last_output == "first\n"
        s.eval("2")
        assert s.last_output == ""  # a reply's output is not repeated in the next one
        # A stream kept from a batch (as a logging handler keeps it) written to by a thread
        # after that batch has answered.
        s.exec("import threading\nthreading.Timer(0.1, out.write, ['late\\n']).start()")
        s.eval("None")
        time.sleep(0.4)
        s.eval("3")
        assert s.last_output == "late\n"



def test_soft_timeout_interrupts_and_keeps_the_namespace(launcher):
    with session(launcher) as s:
        s.define("kept", "yes").eval("None")
        started = time.monotonic()
        with pytest.raises(SessionTimeout) as info:
            s.timeout(0.5).eval("while True: pass")
        assert time.monotonic() - started < 1.5
        assert info.value.kind == "soft"
        assert isinstance(info.value, TimeoutError)
        assert s.timeout(10).eval("kept") == "yes"


def test_each_batch_gets_its_whole_timeout_from_its_own_start(launcher):
    # The server keeps a timer armed for an earlier batch; it must not cut a later one short,
    # and a shorter timeout must still come on time.
    with session(launcher) as s:
        s.timeout(0.6).exec("import time").eval("time.sleep(0.4)")
        s.eval("time.sleep(0.4)")  # the first batch's timer fires 0.2 s into this one
        started = time.monotonic()
        with pytest.raises(SessionTimeout) as caught:
            s.timeout(10).eval("time.sleep(0.1)") or s.timeout(0.2).eval("time.sleep(5)")
        assert caught.value.kind == "soft"
        assert 0.15 < time.monotonic() - started < 1.5
        assert s.timeout(None).eval("time.sleep(0.7) or 'no timeout'") == "no timeout"


def test_soft_timeout_is_not_swallowed_by_except_exception(launcher):
    with session(launcher) as s:
        with pytest.raises(SessionTimeout):
            s.timeout(0.3).eval("while True:\n    try:\n        pass\n    except Exception:\n"
                                "        pass\n")


def test_hard_timeout_kills_when_user_code_ignores_the_interrupt(launcher):
    with session(launcher, grace=0.3) as s:
        s.exec("import signal; signal.signal(signal.SIGALRM, signal.SIG_IGN)").eval("None")
        started = time.monotonic()
        with pytest.raises(SessionTimeout) as info:
            s.timeout(0.5).eval("while True: pass")
        assert info.value.kind == "hard"
        assert time.monotonic() - started < 1.5
        assert launcher.started[0].poll() is not None
        assert s.timeout(5).eval("'restarted'") == "restarted"  # a fresh server
        assert s.stats.restarts == 1


def test_define_of_an_unmarshallable_value_fails_before_sending(launcher):
    with session(launcher) as s:
        with pytest.raises(MarshalError, match=r"define\('x'\): x\['rows'\]\[1\]: set"):
            s.define("x", {"rows": [1, {1, 2}]})
        assert not launcher.started  # nothing was started, let alone sent
        assert s.define("x", 3).eval("x") == 3


def test_an_unmarshallable_result_is_an_error_and_the_session_survives(launcher):
    with session(launcher) as s:
        with pytest.raises(MarshalError, match="eval result: set is not marshallable"):
            s.eval("{1, 2}")
        assert s.eval("[1, 2]") == [1, 2]


def test_a_str_utf8_cannot_encode_is_a_marshal_error_both_ways(launcher):
    with session(launcher) as s:
        with pytest.raises(MarshalError, match=r"define\('x'\): x: .*surrogates not allowed"):
            s.define("x", "a\ud800")
        s.define("y", 7).eval("y")
        with pytest.raises(MarshalError, match="eval result: .*surrogates not allowed"):
            s.eval("'a' + chr(0xD800)")
        assert s.eval("y") == 7  # the same server: nothing was lost
        assert s.stats.restarts == 0


def test_invalid_names_and_types_are_refused(launcher):
    s = session(launcher)
    with pytest.raises(ValueError, match="not a valid Python variable name"):
        s.define("not valid", 1)
    with pytest.raises(ValueError):
        s.define("class", 1)
    with pytest.raises(TypeError):
        s.exec(b"x = 1")
    with pytest.raises(ValueError):
        s.timeout(0)


def test_init_runs_once_per_server_before_the_first_batch(launcher):
    calls = []

    def setup(s):
        calls.append(1)
        s.define("base", 10).exec("def f(x): return base + x")

    with session(launcher).init(setup) as s:
        assert s.define("v", 1).eval("f(v)") == 11
        assert s.eval("f(2)") == 12
    assert calls == [1]


def test_container_to_host_calls_travel_over_the_same_channel(launcher):
    logged = []
    with session(launcher) as s:
        s.handle("log", lambda msg, level="info": logged.append((level, msg)) or len(logged))
        result = s.eval("from hxpy.server import call_host\n"
                        "[call_host('log', 'a'), call_host('log', 'b', level='warn')]")
        assert result == [1, 2]
        assert logged == [("info", "a"), ("warn", "b")]
        with pytest.raises(PythonError) as info:
            s.eval("call_host('nope')")
        assert info.value.remote_type == "hxpy.server.HostCallError"
        assert "no handler for 'nope'" in info.value.remote_message
        assert s.stats.host_calls == 3


def test_server_crash_is_session_died_with_the_exit_code(launcher):
    with session(launcher) as s:
        s.eval("None")
        with pytest.raises(SessionDied) as info:
            s.eval("import os; os._exit(7)")
        assert info.value.exit_code == 7
        assert "exit code 7" in str(info.value)
        assert s.eval("'back'") == "back"


def test_server_crash_during_handshake(launcher):
    with pytest.raises(SessionDied):
        session(launcher, env={"HXPY_FAULT": "crash"}).eval("1")


def test_garbage_from_the_server_is_a_protocol_error(launcher):
    with pytest.raises(ProtocolError, match="unreadable frame"):
        session(launcher, env={"HXPY_FAULT": "garbage"}).eval("1")


def test_oversized_reply_is_refused_by_the_host(launcher):
    with session(launcher, env={"HXPY_FAULT": "oversize"}, max_frame=1 << 20) as s:
        with pytest.raises(ProtocolError, match="exceeds the maximum frame size"):
            s.eval("1")


def test_oversized_define_is_refused_by_the_host_before_sending(launcher):
    with session(launcher, max_frame=1 << 20) as s:
        s.eval("None")
        with pytest.raises(MarshalError, match="over the maximum frame size"):
            s.define("big", b"x" * (2 << 20)).eval("len(big)")
        assert s.eval("'ok'") == "ok"


def test_kill_from_another_thread_ends_a_running_eval(launcher):
    import threading

    s = session(launcher)
    with s:
        s.eval("None")
        threading.Timer(0.3, s.kill).start()
        with pytest.raises(SessionClosed):
            s.eval("import time; time.sleep(30)")


# -- the server's side of the contract, spoken to with raw sockets --------------------------

def _start_raw(launcher, **env):
    return start_raw(launcher, "right-key", env=env)


def _hello(key, version=protocol.PROTOCOL_VERSION):
    return {"type": "hello", "version": version, "key": key}


def test_wrong_key_is_refused_and_the_right_one_still_accepted(launcher):
    instance, sock = _start_raw(launcher)
    with sock:
        wire.send_message(sock, _hello("wrong-key"))
        reply = wire.recv_message(sock)
        assert reply == {"type": "refused", "reason": "wrong session key"}
        with pytest.raises(wire.PeerClosed):
            wire.recv_message(sock)
    good = socket.socket(socket.AF_UNIX)
    good.connect(instance.endpoint.address)
    with good:
        wire.send_message(good, _hello("right-key"))
        assert wire.recv_message(good)["type"] == "welcome"


def test_wrong_protocol_version_is_refused(launcher):
    _, sock = _start_raw(launcher)
    with sock:
        wire.send_message(sock, _hello("right-key", version=99))
        assert "version 99 is not supported" in wire.recv_message(sock)["reason"]


def test_a_second_client_cannot_reach_a_claimed_server(launcher):
    instance, sock = _start_raw(launcher)
    with sock:
        wire.send_message(sock, _hello("right-key"))
        assert wire.recv_message(sock)["type"] == "welcome"
        intruder = socket.socket(socket.AF_UNIX)
        with intruder, pytest.raises((FileNotFoundError, ConnectionRefusedError)):
            intruder.connect(instance.endpoint.address)
        assert not os.path.exists(instance.endpoint.address)


def test_server_refuses_an_oversized_frame_before_allocating(launcher):
    instance, sock = _start_raw(launcher)
    with sock:
        wire.send_message(sock, _hello("right-key"))
        wire.recv_message(sock)
        sock.sendall(wire.HEADER.pack(0xFFFF_FFFF))  # a buffer frame of 2 GiB - 1
        reply = wire.recv_message(sock)
        assert reply["type"] == "error" and reply["kind"] == "protocol"
        assert "exceeds the maximum frame size of 1048576" in reply["error"]["message"]
    assert instance.wait(5) is not None


def test_server_exits_when_the_host_connection_drops_mid_batch(launcher):
    instance, sock = _start_raw(launcher)
    wire.send_message(sock, _hello("right-key"))
    wire.recv_message(sock)
    wire.send(sock, protocol.pack_batch(1, None, [codec.encode(
        ["exec", "import time; time.sleep(60)"])]))
    time.sleep(0.2)
    sock.close()
    assert instance.wait(5) is not None


# -- the asyncio session, over the same server --------------------------------------------

def test_async_session_runs_batches_without_blocking_the_loop(launcher):
    import asyncio

    from pyhost import AsyncSession

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        async with AsyncSession(launcher, io=None) as s:
            assert await s.define("a", 100).define("b", 2).exec(
                "def mult(x, y): return x * y").eval("mult(a, b)") == 200
            before = ticks
            assert await s.eval("import time; time.sleep(0.5); 'slept'") == "slept"
            assert ticks - before >= 20  # the loop kept running while the batch ran
            with pytest.raises(PythonError):
                await s.eval("1/0")
            with pytest.raises(SessionTimeout) as info:
                await s.timeout(0.3).eval("while True: pass")
            assert info.value.kind == "soft"
            s.handle("add", lambda x, y: x + y)
            assert await s.timeout(10).eval(
                "from hxpy.server import call_host; call_host('add', 2, 3)") == 5
            results = await asyncio.gather(*(s.define(f"v{n}", n).eval(f"v{n} * 2")
                                             for n in range(5)))
            assert sorted(results) == [0, 2, 4, 6, 8]
        tick_task.cancel()

    asyncio.run(main())


@pytest.mark.parametrize("spin", [0.0, 2e-4])
def test_spin_reaches_both_ends(launcher, spin):
    with session(launcher, spin=spin) as s:
        server_spin = s.eval("import hxpy.server\nhxpy.server._current.reader.spin")
        assert server_spin == pytest.approx(spin)
        assert s._transport._reader.spin == spin
        assert [s.define("i", i).eval("i * 2") for i in range(200)] == list(range(0, 400, 2))


def test_an_idle_server_has_imported_nothing_user_code_did_not_ask_for(launcher):
    # hashlib loads OpenSSL (3.6 MB of a server's resident memory, measured); numpy and
    # pandas load when a value needs them.
    with session(launcher) as s:
        loaded = s.eval("sorted(__import__('sys').modules)")
        assert not {"hashlib", "hmac", "_hashlib", "numpy", "pandas"} & set(loaded)
        assert s.eval("import hmac\nhmac.new(b'k', b'm', 'sha256').hexdigest()[:8]")
