"""SystemExit and KeyboardInterrupt from user code end the batch, not the session (as in
IPython), against the real hxpy server run as a local process; only the process ending ends
the session."""

import pytest

from pyhost import PythonError, SessionClosed, SessionDied
from tests.unit.conftest import session


def assert_same_server_lives(launcher):
    assert len(launcher.started) == 1
    assert launcher.started[0].poll() is None


def test_sys_exit_is_an_error_and_the_session_lives_on(launcher):
    with session(launcher) as s:
        s.exec("import sys\nkept = 41").eval("None")
        with pytest.raises(PythonError) as info:
            s.eval("print('before'); sys.exit(3)")
        err = info.value
        assert err.remote_type == "SystemExit"
        assert err.remote_message == "3"
        assert "SystemExit: 3" in str(err)
        assert "sys.exit(3)" in err.remote_traceback
        assert "server.py" not in err.remote_traceback
        assert err.output == "before\n"
        assert s.eval("kept + 1") == 42
        assert_same_server_lives(launcher)


@pytest.mark.parametrize(("source", "message"), [
    ("raise SystemExit", ""),
    ("import sys; sys.exit()", ""),
    ("exit()", "None"),  # site's exit() passes its default code, None
    ("raise SystemExit('bye')", "bye"),
])
def test_exit_without_a_numeric_code(launcher, source, message):
    with session(launcher) as s:
        s.define("kept", 1).eval("None")
        with pytest.raises(PythonError) as info:
            s.eval(source)
        assert info.value.remote_type == "SystemExit"
        assert info.value.remote_message == message
        assert s.eval("kept") == 1
        assert_same_server_lives(launcher)


def test_an_argparse_error_keeps_its_usage_text(launcher):
    with session(launcher) as s:
        s.exec("import argparse\nparser = argparse.ArgumentParser(prog='tool')").eval("None")
        with pytest.raises(PythonError) as info:
            s.eval("parser.parse_args(['--nope'])")
        err = info.value
        assert err.remote_type == "SystemExit"
        assert err.remote_message == "2"
        assert "usage: tool" in err.output
        assert "unrecognized arguments: --nope" in err.output
        assert s.eval("parser.prog") == "tool"
        assert_same_server_lives(launcher)


def test_keyboard_interrupt_is_an_error_and_the_session_lives_on(launcher):
    with session(launcher) as s:
        s.define("kept", "yes").eval("None")
        with pytest.raises(PythonError) as info:
            s.exec("def stop():\n    raise KeyboardInterrupt\n").eval("stop()")
        assert info.value.remote_type == "KeyboardInterrupt"
        assert "in stop" in info.value.remote_traceback
        assert s.eval("kept") == "yes"
        assert_same_server_lives(launcher)


def test_exit_stops_the_rest_of_the_batch(launcher):
    with session(launcher) as s:
        with pytest.raises(PythonError):
            s.exec("import sys\nsys.exit(1)").exec("after = True").eval("after")
        assert s.eval("'after' in globals()") is False
        assert_same_server_lives(launcher)


def test_exit_after_a_host_call_leaves_the_channel_in_step(launcher):
    with session(launcher) as s:
        s.handle("add", lambda x, y: x + y)
        with pytest.raises(PythonError) as info:
            s.eval("import sys\nfrom hxpy.server import call_host\n"
                   "sys.exit(call_host('add', 2, 2))")
        assert info.value.remote_message == "4"
        assert s.eval("call_host('add', 1, 2)") == 3
        assert s.stats.host_calls == 2
        assert_same_server_lives(launcher)


def test_os_exit_still_ends_the_session(launcher):
    with session(launcher) as s:
        s.eval("None")
        with pytest.raises(SessionDied) as info:
            s.eval("import os; os._exit(5)")
        assert info.value.exit_code == 5
        assert launcher.started[0].poll() is not None


def _killed_with_grace(launcher, source: str, grace: float,
                       streamed: list[str] | None = None) -> tuple[BaseException, float]:
    """Eval ``source`` (which prints "started") in a thread, then ``kill(grace=...)`` the
    session from this one; what the eval raised, and how long the kill took. What the
    batch streamed goes into ``streamed``."""
    import threading
    import time

    raised: list[BaseException] = []
    s = session(launcher)
    s.__enter__()
    s.eval("None")

    def work() -> None:
        try:
            s.eval(source, on_output=(streamed if streamed is not None else []).append)
        except BaseException as exc:  # noqa: B036  (whatever it is, the test reads it)
            raised.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.5)  # into user code
    began = time.monotonic()
    s.kill(grace=grace)
    took = time.monotonic() - began
    thread.join(30)
    assert raised, "the eval did not end"
    return raised[0], took


def test_a_kill_with_grace_interrupts_user_code_and_runs_its_finally(launcher):
    streamed: list[str] = []
    error, took = _killed_with_grace(
        launcher, "import time\ntry:\n    time.sleep(60)\nfinally:\n    print('cleaned up')",
        grace=20, streamed=streamed)
    assert took < 5, took  # the server ended on SIGTERM: the grace was not waited out
    assert isinstance(error, PythonError), error
    assert error.remote_type == "hxpy.server.Terminated"
    # Streamed while the error was made, or left for the reply: once either way.
    assert "".join(streamed) + error.output == "cleaned up\n"
    assert launcher.started[0].poll() is not None


def test_user_code_ignoring_sigterm_is_killed_when_the_grace_runs_out(launcher):
    error, took = _killed_with_grace(
        launcher, "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                  "time.sleep(60)", grace=1.5)
    assert 1.4 < took < 5, took
    assert isinstance(error, SessionClosed), error  # as a kill without grace ends an eval
    assert launcher.started[0].poll() is not None
