"""Tests for the native REST API, through the real HTTP server on both dialects."""
