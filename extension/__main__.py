"""`python -m extension`: the osquery extension (same as `rarenet-extension`)."""

import sys

from extension.main import main

sys.exit(main())
