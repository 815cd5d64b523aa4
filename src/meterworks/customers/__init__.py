"""Customers: who is billed, known to the vendor by `external_id`."""
