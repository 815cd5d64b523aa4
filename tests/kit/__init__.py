"""Tests for the pure building blocks: periods, money, decimals, instants."""
