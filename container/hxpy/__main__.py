"""``python -m hxpy``: run the in-container server."""

import os
import sys

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
