"""The simulator's own tests (a package, so its conftest does not shadow tests/conftest)."""
