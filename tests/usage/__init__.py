"""Tests for usage: aggregations, ingestion, idempotency, group commit, corrections, reading."""
