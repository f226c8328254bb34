"""`python -m rarenet.extension`: the osquery extension (same as `rarenet-extension`)."""

import sys

from rarenet.extension.main import main

sys.exit(main())
