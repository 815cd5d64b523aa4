"""Whole billing stories told through the public API, with the injected clock."""
