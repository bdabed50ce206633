"""``digitalhub_runtime_python`` where the real SDK is not installed: what a DigitalHub handler
imports from it, so the design's handlers (``from digitalhub_runtime_python import handler``)
run unchanged.

Not on ``sys.path`` by itself: :func:`hxpy.runtime.shim.install` appends this directory's
parent at the END of ``sys.path`` before a handler is imported, and only when the real
package cannot be found, so an installed SDK always wins. Imports only hxpy.
"""

from hxpy.runtime.handler import handler
from hxpy.runtime.proxies import Entity

__all__ = ["Artifact", "Dataitem", "Model", "handler"]

# The real SDK's entity classes come from ``digitalhub``; a handler only names them in its
# annotations. Here every entity a handler holds is one proxy class, so the three names are it.
Dataitem = Entity
Artifact = Entity
Model = Entity
