"""Entities of the catalog as the host sees them: artifacts, dataitems, models, with
DigitalHub's keys (``store://<project>/<type>/<kind>/<name>:<id>``), fields and methods.

An entity is a thin object over its catalog :class:`~.catalog.Record`; its files live in the
:class:`~.store.Store`.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, NotInCatalog

if TYPE_CHECKING:
    import pandas

    from .context import Runtime

__all__ = ["KINDS", "TABLE_FORMATS", "Artifact", "Dataitem", "Entity", "EntityKey", "Model",
           "check_kind", "check_name", "entity_class", "iso_time", "new_id", "parse_key"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_KIND = re.compile(r"^[a-z][a-z0-9_+-]{0,63}$")

KINDS: dict[str, tuple[str, ...]] = {
    "artifact": ("artifact",),
    "dataitem": ("table", "dataitem"),
    "model": ("model", "mlflow", "sklearn", "huggingface"),
}
"""The kinds each entity type may have, as DigitalHub names them."""
_KEY = re.compile(r"^store://(?P<project>[^/]+)/(?P<type>[^/]+)/(?P<kind>[^/]+)/"
                  r"(?P<name>[^/:]+)(?::(?P<id>[0-9a-f]+))?$")


def new_id() -> str:
    """A new id: the hex of a random (version 4) UUID, as ``uuid.uuid4().hex`` is, without
    making the UUID object (a third of that call's time; one id per run)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    return raw.hex()


def iso_time(seconds: float) -> str:
    """``seconds`` since the epoch as DigitalHub writes an entity's ``created``/``updated``:
    ISO 8601 in UTC, e.g. ``2025-01-31T09:30:00.123+00:00`` (the catalog keeps the float
    beside it, in the record, for its queries).

    The text of ``datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec=
    "milliseconds")``, made as it does (microseconds rounded half to even, then cut to
    milliseconds) with the date and time of the last second kept: a quarter of its time,
    twice per run."""
    global _last_second
    fraction, whole = math.modf(seconds)
    micros = round(fraction * 1e6)
    second = int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    kept = _last_second
    if kept[0] != second:
        kept = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{kept[1]}.{micros // 1000:03d}+00:00"


_last_second: tuple[int | None, str] = (None, "")  # (a second, its date and time)


def check_name(what: str, name: str) -> str:
    """``name`` if it can name an entity (a file name part of the store path too).

    Raises:
        ConfigurationError: it cannot.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(f"{what} {name!r}: a name is 1-128 letters, digits, '.', '_' "
                                 "or '-', starting with a letter or digit")
    return name


def check_kind(entity_type: str, kind: str) -> str:
    """``kind`` if it is a kind of ``entity_type`` (:data:`KINDS`).

    Raises:
        ConfigurationError: it is not (a long or odd value is shown shortened).
    """
    if not isinstance(kind, str) or not _KIND.match(kind):
        shown = repr(kind)[:40] + ("..." if len(repr(kind)) > 40 else "")
        raise ConfigurationError(f"{entity_type} kind {shown}: a kind is a short identifier "
                                 "(a lowercase letter, then up to 63 of a-z, 0-9, '_', '+', "
                                 "'-')")
    known = KINDS.get(entity_type, ())
    if kind not in known:
        raise ConfigurationError(f"{entity_type} kind {kind!r}: the kinds of a {entity_type} "
                                 f"are {', '.join(known)}")
    return kind


@dataclass(frozen=True)
class EntityKey:
    """The parts of a ``store://`` key; ``id`` is None for "the latest version"."""

    project: str
    entity_type: str
    kind: str
    name: str
    id: str | None

    def __str__(self) -> str:
        tail = f":{self.id}" if self.id else ""
        return f"store://{self.project}/{self.entity_type}/{self.kind}/{self.name}{tail}"


def parse_key(key: str) -> EntityKey:
    """The parts of ``store://project/type/kind/name[:id]``.

    Raises:
        ConfigurationError: not such a key (``s3://`` and other stores are named as such).
    """
    match = _KEY.match(key) if isinstance(key, str) else None
    if match is None:
        scheme = key.split("://", 1)[0] if isinstance(key, str) and "://" in key else ""
        if scheme and scheme != "store":
            raise ConfigurationError(f"{key!r}: no {scheme} store is configured; entities are "
                                     "named store://<project>/<type>/<kind>/<name>:<id>")
        raise ConfigurationError(f"{key!r} is not an entity key "
                                 "(store://<project>/<type>/<kind>/<name>:<id>)")
    return EntityKey(match["project"], match["type"], match["kind"], match["name"],
                     match["id"])


class Entity:
    """An entity version: its identity, ``metadata``, ``spec`` and ``status``."""

    entity_type = ""

    def __init__(self, document: dict[str, Any], runtime: Runtime) -> None:
        self._document = document
        self._runtime = runtime
        self.project: str = document["project"]
        self.name: str = document["name"]
        self.kind: str = document["kind"]
        self.id: str = document["id"]
        self.key: str = document["key"]
        self.metadata: dict[str, Any] = document.get("metadata") or {}
        self.spec: dict[str, Any] = document.get("spec") or {}
        self.status: dict[str, Any] = document.get("status") or {}

    @classmethod
    def document(cls, project: str, name: str, kind: str, spec: dict[str, Any],
                 metadata: dict[str, Any] | None = None,
                 status: dict[str, Any] | None = None, id: str | None = None) -> dict[str, Any]:
        """A new entity document (JSON-able), with its key."""
        id = id or new_id()
        key = str(EntityKey(project, cls.entity_type, kind, name, id))
        now = iso_time(time.time())
        return {"entity_type": cls.entity_type, "project": project, "name": name, "kind": kind,
                "id": id, "key": key,
                "metadata": {"created": now, "updated": now, **(metadata or {})},
                "spec": spec, "status": status or {}}

    def to_dict(self) -> dict[str, Any]:
        """The entity as JSON-able data (what the catalog holds)."""
        return dict(self._document)

    @property
    def runtime(self) -> Runtime:
        """The catalog and store the entity is recorded in."""
        return self._runtime

    @property
    def files(self) -> list[dict[str, Any]]:
        """The entity's files in the store: ``{"path", "size"}`` relative to its directory."""
        return list(self.status.get("files") or [])

    def download(self, destination: str | Path | None = None, overwrite: bool = False) -> str:
        """Copy the entity's files to ``destination`` (a directory; default the current one);
        the path of the file (one file) or of the directory.

        Raises:
            NotInCatalog: the entity has no files.
            ConfigurationError: a file is there already and ``overwrite`` is False (nothing
                is copied then).
        """
        if not self.files:
            raise NotInCatalog(f"{self.key} has no files to download")
        target = Path(destination or ".")
        there = [entry["path"] for entry in self.files if (target / entry["path"]).exists()]
        if there and not overwrite:
            raise ConfigurationError(f"download of {self.key}: {target / there[0]} exists; "
                                     "pass overwrite=True to replace it")
        target.mkdir(parents=True, exist_ok=True)
        for entry in self.files:
            out = target / entry["path"]
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._file_in_store(entry["path"]), out)
        return str(target / self.files[0]["path"]) if len(self.files) == 1 else str(target)

    def _file_in_store(self, relative: str) -> Path:
        """One of the entity's files in the store (checked to stay in the store)."""
        return self._runtime.store.resolve(Path(self.status["path"]) / relative)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entity) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


class Artifact(Entity):
    """Files the function produced or uses (kind ``artifact``)."""

    entity_type = "artifact"


class Dataitem(Entity):
    """Data: a ``table`` (a DataFrame, kept as Parquet) or files."""

    entity_type = "dataitem"

    def as_df(self, file_format: str | None = None, **kwargs: Any) -> pandas.DataFrame:
        """The data as a pandas DataFrame: a logged DataFrame (kept as Parquet), or the CSV
        or Parquet file the dataitem was logged from (``file_format`` ``"csv"`` or
        ``"parquet"``; None: by the file's extension). ``kwargs`` go to pandas'
        ``read_csv``/``read_parquet``.

        Raises:
            ConfigurationError: the dataitem has no file of a readable format, or more than
                one, or a ``file_format`` other than csv and parquet.
        """
        import pandas as pd

        if file_format is not None and file_format not in TABLE_FORMATS:
            raise ConfigurationError(f"file_format={file_format!r}: one of "
                                     f"{', '.join(TABLE_FORMATS)}, or None (by extension)")
        if "table" in self.status and not kwargs and file_format in (None, "parquet"):
            return self._runtime.store.read_table(self.status["table"])
        readable = [entry["path"] for entry in self.files
                    if file_format or Path(entry["path"]).suffix.lower().lstrip(".")
                    in TABLE_FORMATS]
        if len(readable) != 1:
            raise ConfigurationError(
                f"{self.key}: as_df reads one CSV or Parquet file; the dataitem has "
                f"{', '.join(entry['path'] for entry in self.files) or 'no file'}")
        path = self._file_in_store(readable[0])
        fmt = file_format or path.suffix.lower().lstrip(".")
        return pd.read_csv(path, **kwargs) if fmt == "csv" else pd.read_parquet(path, **kwargs)


class Model(Entity):
    """A trained model: files, ``framework`` and ``metrics``."""

    entity_type = "model"


TABLE_FORMATS = ("csv", "parquet")
"""The file formats :meth:`Dataitem.as_df` reads."""

_CLASSES: dict[str, type[Entity]] = {cls.entity_type: cls for cls in (Artifact, Dataitem, Model)}


def entity_class(entity_type: str) -> type[Entity]:
    """The class for ``artifact``, ``dataitem`` or ``model``.

    Raises:
        ConfigurationError: another type.
    """
    try:
        return _CLASSES[entity_type]
    except KeyError:
        raise ConfigurationError(f"{entity_type!r} is not an entity type; the types are "
                                 f"{', '.join(_CLASSES)}") from None
