"""rarenet on-host side: osquery extension and /proc socket collector.

Never imports `baseline`: hosts install this package without numpy, sqlite-utils
or APScheduler.
"""
