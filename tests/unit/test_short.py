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
    assert len(text) == 300 and text.endswith("...")
    assert short(RuntimeError("y" * 300)) == "y" * 300


def test_first_line_keeps_the_headline_only():
    error = RuntimeError("\nbuilding t failed: step 3\nlog line 1\nlog line 2")
    assert short(error, first_line=True) == "building t failed: step 3"
    assert short(error) == "building t failed: step 3 log line 1 log line 2"
    assert short(RuntimeError(""), first_line=True) == "RuntimeError"
