"""Harnesses that run the monitor against simulated gateway processes: the soak (soak.py)."""
