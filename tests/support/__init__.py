"""Helpers shared by the test suite: real databases and a real HTTP server, no mocks."""
