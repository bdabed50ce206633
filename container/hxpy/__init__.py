"""hxpy: the in-container side of pyhost, and the codec both sides share.

``python -m hxpy`` runs the server. ``hxpy.codec`` and ``hxpy.wire`` are the wire format,
``hxpy.haystack`` the Haystack value types. This package imports only msgpack, numpy and
pandas (the last two lazily), never pyhost or docker.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 2
