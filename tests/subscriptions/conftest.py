"""The `api` fixture: this test's organization driven through the real HTTP server."""

from tests.api.builders import api

__all__ = ["api"]
