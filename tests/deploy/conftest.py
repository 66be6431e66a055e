"""Fixtures of tests/deploy (they live in deploy_helpers, importable by the test modules)."""

from deploy_helpers import rendered

__all__ = ["rendered"]
