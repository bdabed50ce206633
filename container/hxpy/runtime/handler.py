"""``@handler(outputs=[...])``: name what a function returns, so a run can map the values to
entities (``outputs={"result": "named_result"}``)."""

from __future__ import annotations

__all__ = ["DEFAULT_OUTPUT", "handler", "output_names"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a job's cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_OUTPUT = "result"  # the one output of a handler that names none


def handler(outputs: list[str] | tuple[str, ...] | None = None) -> Callable[[F], F]:
    """Mark a function as a handler whose return values are called ``outputs``: one name for
    a single value, several for a returned tuple of that length.

    Raises:
        ValueError: ``outputs`` holds something that is not a non-empty str, or a name twice.
    """
    names = list(outputs or ())
    if any(not isinstance(name, str) or not name for name in names) or \
            len(set(names)) != len(names):
        raise ValueError(f"handler(outputs=...) takes distinct non-empty names, not {outputs!r}")

    def mark(function: F) -> F:
        function.__hxpy_outputs__ = names  # type: ignore[attr-defined]
        return function

    return mark


def output_names(function: Callable[..., Any]) -> list[str]:
    """The names a handler gives its return values (``["result"]`` when undecorated)."""
    return list(getattr(function, "__hxpy_outputs__", None) or [DEFAULT_OUTPUT])
