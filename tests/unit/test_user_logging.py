"""What user code logs with ``logging`` is part of its output, as its prints are; the
server's own log is not."""

from __future__ import annotations

from .conftest import session


def test_user_logging_goes_with_the_output_and_streams_too(launcher):
    with session(launcher) as s:
        s.exec("import logging")
        s.eval("logging.getLogger('user').warning('careful: %d', 3)")
        assert "careful: 3" in s.last_output
        chunks: list[str] = []
        s.eval("logging.getLogger('user').error('streamed')", on_output=chunks.append)
        assert "streamed" in "".join(chunks) + s.last_output
        s.eval("logging.getLogger('user').info('below the default level')")
        assert "below the default level" not in s.last_output
