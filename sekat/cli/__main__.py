"""``python -m sekat.cli``: the ``sekat`` command."""

import sys

from sekat.cli import main

sys.exit(main())
