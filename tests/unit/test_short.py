"""``pyhost.errors.short``: the one way a message of ours quotes a lower layer's error."""

from __future__ import annotations

from pyhost.errors import short


def test_the_text_is_one_line():
    assert short(OSError("no such\n  socket\tat /x ")) == "no such socket at /x"


def test_an_empty_error_is_named_by_its_type():
    assert short(TimeoutError()) == "TimeoutError"
    assert short(KeyError("")) == "''"  # KeyError quotes its key: not empty
    assert short(ValueError("  \n ")) == "ValueError"


def test_a_long_text_is_cut_to_300_characters():
    text = short(RuntimeError("x" * 1000))
    assert len(text) == 300 and " ... " in text
    assert short(RuntimeError("y" * 300)) == "y" * 300


def test_a_long_text_loses_its_middle_never_its_end():
    """The cause of an engine error is at its end (Podman's, as a user met it)."""
    message = ("500 Server Error for http+docker://localhost/v4.3.1/containers/"
               + "4f1c" * 40 + "/start: Internal Server Error (\"crun: error setting rlimits "
               "for ready process: error setting rlimit type 7: operation not permitted: "
               "OCI permission denied\")")
    text = short(RuntimeError(message))
    assert len(text) <= 300
    assert text.startswith("500 Server Error for http+docker://localhost/v4.3.1/containers/")
    assert text.endswith("error setting rlimit type 7: operation not permitted: "
                         'OCI permission denied")')
    head, cut, tail = text.partition(" ... ")
    assert cut and message.startswith(head) and message.endswith(tail)


def test_the_end_is_kept_on_the_first_line_too():
    error = RuntimeError("building t failed: " + "step " * 100 + "exit code 2\nlog line")
    assert short(error, first_line=True).endswith("step exit code 2")


def test_first_line_keeps_the_headline_only():
    error = RuntimeError("\nbuilding t failed: step 3\nlog line 1\nlog line 2")
    assert short(error, first_line=True) == "building t failed: step 3"
    assert short(error) == "building t failed: step 3 log line 1 log line 2"
    assert short(RuntimeError(""), first_line=True) == "RuntimeError"
