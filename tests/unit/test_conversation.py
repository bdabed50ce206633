"""One suite, two I/O styles: the blocking Session and the AsyncSession must behave the same
(they share one Conversation; these tests keep it so). Each runs against the real hxpy server
as a local process, through a small driver that hides only ``await``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyhost import (
    AsyncSession,
    ConfigurationError,
    MarshalError,
    PythonError,
    Session,
    SessionDied,
    SessionOptions,
    SessionTimeout,
    py,
)
from pyhost.launchers.process import ProcessLauncher
from tests.support.memory_server import MemoryLauncher


class BlockingDriver:
    def open(self, launcher: Any, **options: Any) -> Session:
        session = Session(launcher, io=None, **options)
        session.__enter__()  # kept across evals, as inside `with`
        return session

    def eval(self, session: Session, expr: str) -> Any:
        return session.eval(expr)

    def close(self, session: Session) -> None:
        session.close()


class AsyncDriver:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def open(self, launcher: Any, **options: Any) -> AsyncSession:
        return AsyncSession(launcher, io=None, **options)

    def eval(self, session: AsyncSession, expr: str) -> Any:
        return self.loop.run_until_complete(session.eval(expr))

    def close(self, session: AsyncSession) -> None:
        self.loop.run_until_complete(session.close())


@pytest.fixture(params=["blocking", "async"])
def driver(request):
    made = BlockingDriver() if request.param == "blocking" else AsyncDriver()
    yield made
    if isinstance(made, AsyncDriver):
        made.loop.close()


@pytest.fixture
def open_session(driver, launcher):
    opened = []

    def open_(**options):
        session = driver.open(launcher, **options)
        opened.append(session)
        return session

    yield open_
    for session in opened:
        driver.close(session)


def test_the_design_example(driver, open_session):
    s = open_session(timeout=10)
    value = driver.eval(s.define("a", 100).define("b", 2)
                        .exec("def mult(x, y): return x * y\n"), "mult(a, b)")
    assert value == 200


def test_an_oversized_define_is_refused_before_anything_is_sent(driver, launcher,
                                                                 open_session):
    s = open_session(max_frame=1 << 16)
    with pytest.raises(MarshalError, match="over the maximum frame size"):
        s.define("big", b"x" * (1 << 17))
    assert not launcher.started
    assert driver.eval(s, "'still usable'") == "still usable"


@pytest.mark.parametrize("bad", [0, -1, "10", True])
def test_timeout_is_validated(open_session, bad):
    with pytest.raises(ValueError, match="timeout must be positive"):
        open_session().timeout(bad)


def test_init_runs_once_per_server_and_a_new_init_replaces_the_old(driver, launcher,
                                                                    open_session):
    ran: list[str] = []
    s = open_session()
    s.init(lambda session: ran.append("first"))
    s.init(lambda session: (ran.append("second"), session.exec("import math")))
    assert driver.eval(s, "math.floor(2.5)") == 2
    assert driver.eval(s, "math.ceil(2.5)") == 3
    assert ran == ["second"]
    assert len(launcher.started) == 1


def test_output_and_its_truncation_are_reported(driver, open_session):
    s = open_session(output_cap=100)
    driver.eval(s, "print('x' * 500)")
    assert s.last_output.startswith("x") and s.last_output_truncated
    driver.eval(s, "print('short')")
    assert s.last_output == "short\n" and not s.last_output_truncated


def test_a_remote_error_leaves_the_session_usable(driver, open_session):
    s = open_session()
    driver.eval(s.exec("x = 41"), "None")
    with pytest.raises(PythonError) as info:
        driver.eval(s, "1 / 0")
    assert info.value.remote_type == "ZeroDivisionError"
    assert driver.eval(s, "x + 1") == 42


def test_a_soft_timeout_keeps_the_namespace(driver, open_session):
    s = open_session()
    driver.eval(s.exec("kept = 'yes'"), "None")
    with pytest.raises(SessionTimeout) as info:
        driver.eval(s.timeout(0.3), "__import__('time').sleep(5)")
    assert info.value.kind == "soft"
    assert driver.eval(s.timeout(10), "kept") == "yes"


def test_host_calls_and_stats(driver, open_session):
    s = open_session()
    s.handle("add", lambda a, b: a + b)
    assert driver.eval(s, "__import__('hxpy.server').server.call_host('add', 2, 3)") == 5
    assert s.stats.host_calls == 1 and s.stats.batches == 1
    assert s.stats.bytes_out > 0 and s.stats.bytes_in > 0


def test_a_dead_server_is_session_died_and_the_next_eval_restarts(driver, open_session):
    s = open_session()
    with pytest.raises(SessionDied) as info:
        driver.eval(s, "__import__('os')._exit(7)")
    assert info.value.exit_code == 7
    assert driver.eval(s, "'again'") == "again"
    assert s.stats.restarts == 1


def test_options_come_as_one_type_or_as_keywords(launcher):
    options = SessionOptions(io=None, timeout=5)
    for session_type in (Session, AsyncSession):
        assert session_type(launcher, options).options is options
        assert session_type(launcher, options, timeout=7).options.timeout == 7
        with pytest.raises(ConfigurationError, match="unknown session option"):
            session_type(launcher, timout=5)


@pytest.mark.parametrize("option", [{"network": "sessions"}, {"io_volume": "data"},
                                    {"io_host_path": "/srv/io"},
                                    {"publish_address": "0.0.0.0"}])
def test_docker_only_options_are_refused_by_the_process_launcher_at_once(driver, launcher,
                                                                        option):
    with pytest.raises(ConfigurationError, match="process launcher"):
        driver.open(launcher, **option)
    assert not launcher.started


@pytest.mark.parametrize("option", [{"timeout": -1}, {"max_frame": 0}, {"spin": -1},
                                    {"log_level": "LOUD"}, {"env": {"K": 1}}])
def test_bad_values_are_configuration_errors_naming_the_option(option):
    name = next(iter(option))
    with pytest.raises(ConfigurationError, match=name):
        SessionOptions(**option)


def test_init_handed_with_every_message_runs_once_per_start():
    """hxPy's task pattern: py(persist=k).init(fn).define(...).eval(...) per message."""
    launcher = ProcessLauncher()
    ran: list[int] = []
    died = 0
    try:
        for message in range(1000):
            if message == 600:
                launcher.started[-1].kill()  # the server dies between two messages
            for _attempt in range(2):  # a message that hits a dead server is sent again
                s = py(launcher=launcher, io=None, persist="worker-init")
                try:
                    value = (s.init(lambda session, m=message: ran.append(m))
                             .define("m", message).eval("m * 2"))
                    break
                except SessionDied:
                    died += 1
            assert value == message * 2
        assert died == 1
        assert ran == [0, 600], ran  # once per start, the latest init each time
        assert len(launcher.started) == 2
    finally:
        py(launcher=launcher, io=None, persist="worker-init").close()
        for instance in launcher.started:
            instance.cleanup()


@pytest.mark.parametrize("style", ["blocking", "async"])
def test_sessions_run_over_a_memory_transport(style):
    launcher = MemoryLauncher()
    driver = BlockingDriver() if style == "blocking" else AsyncDriver()
    s = driver.open(launcher)
    try:
        value = driver.eval(s.define("a", 100).define("b", 2)
                            .exec("def mult(x, y): return x * y\n"), "mult(a, b)")
        assert value == 200
        assert s.server_info.get("stub") is True
        assert launcher.started[0].batches == 1  # define, exec and eval in one batch
    finally:
        driver.close(s)
