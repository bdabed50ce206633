"""``python -m pyhost``: the same as the ``pyhost`` command."""

import sys

from .cli import main

sys.exit(main())
