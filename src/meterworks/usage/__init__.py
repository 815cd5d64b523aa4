"""Usage: the append-only ledger, its group-commit writer, running totals and reading them."""
