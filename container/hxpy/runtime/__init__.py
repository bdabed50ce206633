"""The in-container half of the python runtime: what a job's handler sees (``project``,
``run``, entities) and how it is called. Imports nothing from pyhost; every call it makes on
the catalog travels to the host over the session channel (:mod:`.calls`)."""

from .handler import DEFAULT_OUTPUT, handler

__all__ = ["DEFAULT_OUTPUT", "handler"]
