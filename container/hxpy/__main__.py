"""``python -m hxpy``: run the in-container server.

Session images start it as ``python3 -c "import hxpy.__main__"``: the same, without runpy
(whose imports are about 3 ms of a cold start). Imported that way, this module takes the
place ``-m`` gives it, so user code sees the same ``__main__`` (its ``__spec__`` and
``__file__``, which multiprocessing and pandas look at) and the same ``sys.argv``.
"""

import os
import sys

if __name__ == "hxpy.__main__":  # imported by -c, not run by -m
    sys.modules["__main__"] = sys.modules[__name__]
    sys.argv[0] = __file__
    __name__ = "__main__"

# The image sets PYTHONSAFEPATH so the working directory (/io, the user's files) is not put
# first on sys.path, where a user's /io/json.py would shadow the real json. Interpreters
# before 3.11 do not know the variable: do what it asks before the server imports anything.
if (os.environ.get("PYTHONSAFEPATH") and not getattr(sys.flags, "safe_path", False)
        and sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.getcwd()):
    del sys.path[0]

# Listen before importing the server (half of the start): the host connects and sends its
# hello meanwhile, and the server finds it waiting once it accepts.
from .listening import DEFAULT_LISTEN, listen  # noqa: E402  (after the path is made safe)

_listener = listen(os.environ.get("HXPY_LISTEN", DEFAULT_LISTEN))

from .server import main  # noqa: E402

sys.exit(main(_listener))
