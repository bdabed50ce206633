"""The names of the calls the runtime makes from a job to the host: one table, shared by the
in-container half (which calls them with ``call_host``) and the host (which answers them).

Each proxy method in :mod:`hxpy.runtime.proxies` is ONE of these calls (a file is several:
it travels in chunks of :data:`CHUNK_SIZE`).
"""

from __future__ import annotations

__all__ = [
    "ALL",
    "CHUNK_SIZE",
    "GET_ENTITY",
    "LOG_ENTITY",
    "LOG_METRIC",
    "LOG_METRICS",
    "READ_CHUNK",
    "READ_TABLE",
    "SERVE_HEALTH",
    "SERVE_LOGS",
    "UPLOAD_BEGIN",
    "UPLOAD_CHUNK",
]

PREFIX = "runtime."
LOG_ENTITY = PREFIX + "log_entity"      # (entity_type, name, kind, fields, upload id | None)
GET_ENTITY = PREFIX + "get_entity"      # (entity_type, name or key) -> entity document
READ_TABLE = PREFIX + "read_table"      # (key, file_format, options) -> DataFrame
READ_CHUNK = PREFIX + "read_chunk"      # (key, path in the entity, offset, size) -> bytes
UPLOAD_BEGIN = PREFIX + "upload_begin"  # (filename) -> upload id
UPLOAD_CHUNK = PREFIX + "upload_chunk"  # (upload id, bytes)
LOG_METRIC = PREFIX + "log_metric"      # (name, value, step | None, overwrite)
LOG_METRICS = PREFIX + "log_metrics"    # ({name: value}, step | None, overwrite)
# A serve run's replica reports to the host that supervises it:
SERVE_LOGS = PREFIX + "serve_logs"      # (replica index, text printed or logged)
SERVE_HEALTH = PREFIX + "serve_health"  # (replica index, {"ready", "requests", "errors", ...})

ALL = (LOG_ENTITY, GET_ENTITY, READ_TABLE, READ_CHUNK, UPLOAD_BEGIN, UPLOAD_CHUNK, LOG_METRIC,
       LOG_METRICS, SERVE_LOGS, SERVE_HEALTH)

CHUNK_SIZE = 1 << 20  # bytes per file chunk: a file never needs one allocation of its size
