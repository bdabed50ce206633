"""A record's document as JSON text: the one codec every catalog backend uses.

A document is a dict of JSON data: dicts with ``str`` keys, lists (a tuple is stored as a
list), ``str``, ``int``, ``float``, ``bool`` and ``None``. Anything else is refused with a
:class:`~.base.CatalogError` that says where it sits (``document['spec']['x'][2]``) rather
than stored in a form that reads back as something else. Nothing is ever pickled.

``NaN`` and the infinities are accepted (as :func:`json.dumps` writes them): a run's metric
may well be ``nan``, and losing the whole status over it would be worse.

The text is written by :mod:`orjson` (a tenth of :mod:`json`'s time: two documents per local
run) when the document is plain JSON data of exactly the builtin types with finite floats;
else, or where orjson refuses (an int over 64 bits, a lone surrogate), by :mod:`json`, which
writes ``NaN`` where orjson would write ``null``. Either text decodes to the same document.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from .base import CatalogError

__all__ = ["decode_document", "encode_document", "encode_with_copy"]

_SCALARS = (str, int, float, bool, type(None))
# A float is plain only when finite (orjson writes NaN as null): the walks look at it apart.
_EXACT_SCALARS = frozenset((str, int, bool, type(None)))
# Made once: json.dumps with any option set builds a new encoder at every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False)


def encode_document(document: Any) -> str:
    """``document`` as JSON text.

    Raises:
        CatalogError: it is not a dict of JSON data; the message names the first field that
            is not (a non-``str`` key, an object JSON has no form for, a cycle).
    """
    try:
        # A walk that only looks (an insert needs no copy); anything else as ever.
        plain = type(document) is dict and _plain(document)
    except RecursionError:
        plain = False  # a cycle, or nested too deeply: _encoded says which
    return _text(document) if plain else _encoded(document, copy=False)[0]


def encode_with_copy(document: Any) -> tuple[str, dict[str, Any]]:
    """``document`` as JSON text, and the document that text decodes to (a new dict, a
    tuple in it a list), made in the walk that checks it rather than by parsing the text
    (a run's status is written, and handed back, at every transition).

    Raises:
        CatalogError: as :func:`encode_document`.
    """
    text, copied = _encoded(document)
    return text, decode_document(text) if copied is None else copied


def _encoded(document: Any, copy: bool = True) -> tuple[str, dict[str, Any] | None]:
    """The text, and the copy :func:`_plain_copy` makes (None for data of other types, or
    when not ``copy``: then the document is checked by the slow walk alone)."""
    if not isinstance(document, dict):
        raise CatalogError(f"a document is a dict, not {type(document).__name__}")
    try:
        copied = _plain_copy(document) if copy else None
        if copied is None:  # the slow walk only to say where the bad value sits, if any
            _check(document, "document", set())
        return _text(document, plain=copied is not None), copied
    except RecursionError:
        raise CatalogError("the document is nested too deeply to store") from None


def _text(document: dict[str, Any], plain: bool = True) -> str:
    """The text of a checked document; ``plain``: :func:`_plain` holds for it."""
    if plain:
        try:
            return orjson.dumps(document).decode()
        except TypeError:  # orjson.JSONEncodeError: what only json writes (see above)
            pass
    return _ENCODER.encode(document)


def decode_document(text: str) -> dict[str, Any]:
    """The document ``text`` holds (a new dict each call).

    Raises:
        CatalogError: the text is not a JSON object (the stored data is damaged).
    """
    try:
        document = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"a stored document is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise CatalogError(f"a stored document is a {type(document).__name__}, not an object")
    return document


class _NotPlain(Exception):
    """A value :func:`_plain_copy` leaves to :func:`_check` and to :mod:`json` (a subclass,
    a non-finite float, anything that is no JSON data)."""


def _plain_copy(value: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of ``value`` as JSON reads it back, when it holds nothing but dicts with
    ``str`` keys, lists, tuples and ``str``, ``int``, finite ``float``, ``bool`` and ``None``
    of exactly those types; else None, and :func:`_check` tells what is wrong, if anything (a
    subclass is JSON data too, copied by decoding the text). A cycle or a nesting too deep
    answers None as well."""
    try:
        copied: dict[str, Any] = _copy(value)
    except (_NotPlain, RecursionError):
        return None
    return copied


def _plain(value: Any) -> bool:
    """Whether :func:`_copy` would copy ``value`` (the same types), without copying it."""
    kind = type(value)
    if kind is float:
        return bool(value - value == 0.0)  # not NaN nor an infinity
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _EXACT_SCALARS and not _plain(item)):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            if type(item) not in _EXACT_SCALARS and not _plain(item):
                return False
        return True
    return False


def _copy(value: Any) -> Any:
    kind = type(value)
    if kind is float and value - value == 0.0:
        return value
    if kind is dict:
        copied = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            copied[key] = item if type(item) in _EXACT_SCALARS else _copy(item)
        return copied
    if kind is list or kind is tuple:
        return [item if type(item) in _EXACT_SCALARS else _copy(item) for item in value]
    raise _NotPlain


def _check(value: Any, where: str, parents: set[int]) -> None:
    # json.dumps would turn {1: x} into {"1": x} and say nothing, and its TypeError does not
    # say where the bad value sits; walking first gives both answers.
    if isinstance(value, _SCALARS):
        return
    if not isinstance(value, (dict, list, tuple)):
        raise CatalogError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}, "
                           "which has no JSON form (store str, int, float, bool, None, "
                           "lists and dicts)")
    if id(value) in parents:
        raise CatalogError(f"{where} contains itself")
    parents.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CatalogError(f"{where} has the key {key!r}, a "
                                   f"{type(key).__name__}; JSON keys are str")
            _check(item, f"{where}[{key!r}]", parents)
    else:
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", parents)
    parents.discard(id(value))
