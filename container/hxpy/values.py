"""Haystack scalar value types with no plain Python equivalent.

``Marker``, ``NA`` and ``Remove`` are singletons; the others are small immutable values. None,
bool, str, int/float, ``bytes``, ``datetime.date``/``time``/``datetime``, dict and list stand for
the remaining Haystack types. Use them through :mod:`hxpy.haystack`.
"""

from __future__ import annotations

import numbers
import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from typing import Any, ClassVar, Optional, Union

__all__ = ["NA", "Coord", "Marker", "Number", "Ref", "Remove", "Symbol", "Uri", "XStr"]

_singletons: dict[type, Any] = {}

# What ``str(Coord)`` writes: two Python floats (an exponent included) in ``C(...)``.
_DECIMAL = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_COORD_TEXT = re.compile(rf"C\({_DECIMAL},{_DECIMAL}\)")


class _Singleton:
    """A class with one instance: calling it always returns that instance."""

    __slots__ = ()
    _text: ClassVar[str] = ""

    def __new__(cls) -> Any:
        instance = _singletons.get(cls)
        if instance is None:
            instance = _singletons[cls] = super().__new__(cls)
        return instance

    def __repr__(self) -> str:
        return self._text

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (type(self), ())

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self


class Marker(_Singleton):
    """The Haystack marker: a tag that is present with no value. ``Marker() is Marker()``."""

    __slots__ = ()
    _text = "M"


class NA(_Singleton):
    """Haystack NA, "not available": a value that is known to be missing. ``NA() is NA()``."""

    __slots__ = ()
    _text = "NA"


class Remove(_Singleton):
    """Haystack Remove, the tag-removal value of a diff. ``Remove() is Remove()``."""

    __slots__ = ()
    _text = "R"


class _Frozen:
    """Immutable values: attributes are set once, in ``__init__``, through ``_set``."""

    __slots__ = ()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


def _check_str(value: Any, what: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")


def _same_number(a: Union[int, float], b: Union[int, float]) -> bool:
    # Haystack numbers treat NaN as equal to NaN.
    return a == b or (a != a and b != b)


class Number(_Frozen):
    """A Haystack Number with a unit, e.g. ``Number(72.5, "°F")``.

    A number without a unit usually travels as a plain int or float; ``Number(3)`` is equal to
    ``3``. NaN equals NaN, as in Haystack.

    Raises:
        TypeError: ``val`` is not a real number (a bool is not one) or ``unit`` not a str.
    """

    __slots__ = ("val", "unit")
    val: Union[int, float]
    unit: Optional[str]

    def __init__(self, val: Union[int, float], unit: Optional[str] = None) -> None:
        if isinstance(val, bool) or not isinstance(val, numbers.Real):
            raise TypeError(f"Number value must be an int or float, not {type(val).__name__}")
        value: Union[int, float] = int(val) if isinstance(val, numbers.Integral) else float(val)
        _check_str(unit, "Number unit", optional=True)
        self._set(val=value, unit=unit)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Number):
            return self.unit == other.unit and _same_number(self.val, other.val)
        if self.unit is None and isinstance(other, (int, float)) and not isinstance(other, bool):
            return _same_number(self.val, other)
        return NotImplemented

    def __hash__(self) -> int:
        if self.val != self.val:
            return hash(("nan", self.unit))
        return hash(self.val) if self.unit is None else hash((self.val, self.unit))

    def __float__(self) -> float:
        return float(self.val)

    def __repr__(self) -> str:
        if self.unit is None:
            return f"Number({self.val!r})"
        return f"Number({self.val!r}, {self.unit!r})"

    def __str__(self) -> str:
        return f"{self.val}{self.unit or ''}"

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return (Number, (self.val, self.unit))


class Ref(_Frozen):
    """A Haystack Ref: an entity id with an optional display name; equal (and hashed) by id.

    ``id()`` and ``dis()`` are methods, as in Haxall's hxPy, whose users call them so.

    Raises:
        TypeError: ``id`` or ``dis`` is not a str.
        ValueError: ``id`` is empty.
    """

    __slots__ = ("_id", "_dis")
    _id: str
    _dis: Optional[str]

    def __init__(self, id: str, dis: Optional[str] = None) -> None:  # noqa: A002 (Haystack name)
        _check_str(id, "Ref id")
        _check_str(dis, "Ref dis", optional=True)
        if not id:
            raise ValueError("Ref id must not be empty")
        self._set(_id=id, _dis=dis)

    def id(self) -> str:
        """The entity id, without the ``@``."""
        return self._id

    def dis(self) -> Optional[str]:
        """The display name, or None."""
        return self._dis

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ref):
            return self._id == other._id
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Ref, self._id))

    def __repr__(self) -> str:
        if self._dis is None:
            return f"Ref({self._id!r})"
        return f"Ref({self._id!r}, {self._dis!r})"

    def __str__(self) -> str:
        return f"@{self._id}"

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return (Ref, (self._id, self._dis))


class Uri(str):
    """A Haystack Uri. It is a str (and equal to the same plain str) that travels as a Uri."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Uri({str.__repr__(self)})"


class Coord(_Frozen):
    """A Haystack Coord: latitude and longitude in decimal degrees.

    Raises:
        TypeError: a coordinate is not a real number.
        ValueError: ``lat`` is outside -90..90 or ``lng`` outside -180..180 (or NaN).
    """

    __slots__ = ("lat", "lng")
    lat: float
    lng: float

    def __init__(self, lat: float, lng: float) -> None:
        for name, value, limit in (("lat", lat, 90.0), ("lng", lng, 180.0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"Coord {name} must be a number, not {type(value).__name__}")
            if not -limit <= float(value) <= limit:
                raise ValueError(f"Coord {name} {value!r} is outside -{limit:g}..{limit:g}")
        self._set(lat=float(lat), lng=float(lng))

    @staticmethod
    def from_str(text: str, checked: bool = True) -> Optional[Coord]:
        """The Coord written ``C(lat,lng)`` in decimal degrees, as ``str(coord)`` writes it.

        Args:
            text: e.g. ``"C(37.55,-77.45)"``.
            checked: raise on a bad string (else return None).

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``text`` is not a Coord, or a coordinate is out of range (``checked``).
        """
        _check_str(text, "Coord text")
        match = _COORD_TEXT.fullmatch(text)
        try:
            if match is None:
                raise ValueError(f"invalid Coord {text!r}: expected C(lat,lng) in degrees")
            return Coord(float(match[1]), float(match[2]))
        except ValueError:
            if checked:
                raise
            return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Coord):
            return (self.lat, self.lng) == (other.lat, other.lng)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Coord, self.lat, self.lng))

    def __repr__(self) -> str:
        return f"Coord({self.lat!r}, {self.lng!r})"

    def __str__(self) -> str:
        return f"C({self.lat},{self.lng})"

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return (Coord, (self.lat, self.lng))


class XStr(_Frozen):
    """A Haystack XStr: a value of a named type encoded as a string, e.g. ``XStr("Bin", ...)``.

    Raises:
        TypeError: ``type`` or ``val`` is not a str.
        ValueError: ``type`` does not start with an ASCII capital letter.
    """

    __slots__ = ("type", "val")
    type: str
    val: str

    def __init__(self, type: str, val: str) -> None:  # noqa: A002 (Haystack name)
        _check_str(type, "XStr type")
        _check_str(val, "XStr val")
        if not type or not ("A" <= type[0] <= "Z"):
            raise ValueError(f"XStr type {type!r} must start with an ASCII capital letter")
        self._set(type=type, val=val)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, XStr):
            return (self.type, self.val) == (other.type, other.val)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((XStr, self.type, self.val))

    def __repr__(self) -> str:
        return f"XStr({self.type!r}, {self.val!r})"

    def __str__(self) -> str:
        return f"{self.type}({self.val!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (XStr, (self.type, self.val))


class Symbol(_Frozen):
    """A Haystack Symbol, e.g. ``Symbol("elec-meter")`` (written ``^elec-meter``).

    Raises:
        TypeError: ``val`` is not a str.
        ValueError: ``val`` is empty.
    """

    __slots__ = ("val",)
    val: str

    def __init__(self, val: str) -> None:
        _check_str(val, "Symbol val")
        if not val:
            raise ValueError("Symbol val must not be empty")
        self._set(val=val)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Symbol):
            return self.val == other.val
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Symbol, self.val))

    def __repr__(self) -> str:
        return f"Symbol({self.val!r})"

    def __str__(self) -> str:
        return f"^{self.val}"

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return (Symbol, (self.val,))

