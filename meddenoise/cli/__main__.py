"""``python -m meddenoise.cli``: the same as the ``meddenoise`` command."""

import sys

from meddenoise.cli import main

sys.exit(main())
