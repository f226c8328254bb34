"""rarenet on-host side: osquery extension and /proc socket collector.

Never imports `baseline`: hosts install this package without numpy, sqlite-utils
or APScheduler.
"""

__version__ = "0.1.0"  # the one version of rarenet: pyproject.toml and baseline read it
