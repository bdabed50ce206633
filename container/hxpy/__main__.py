"""``python -m hxpy``: run the in-container server."""

import sys

from .server import main

sys.exit(main())
