"""``python -m landscape.cli``: the ``landscape`` command."""

import sys

from . import main

sys.exit(main())
