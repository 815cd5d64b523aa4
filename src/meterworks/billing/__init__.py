"""Billing: rating usage, invoices and their lifecycle."""
