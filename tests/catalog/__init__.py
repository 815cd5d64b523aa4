"""Tests for the catalog: meters and plans through the API."""
