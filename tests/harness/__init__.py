"""Harnesses that run the monitor against simulated gateway processes: the soak (soak.py) and the
fleet (fleet.py). The fleet reuses the paging test's helpers in tests/alerts, put on sys.path here
(where pytest puts it too), so that every harness module can import them whatever it imports first."""

from harness import paths as paths
