"""Hostile submissions and platform faults (issue #6): a package, so its conftest does not
shadow ``tests/conftest.py`` under the module name ``conftest``."""
