"""Tests for billing: pricing, rating and invoices."""
