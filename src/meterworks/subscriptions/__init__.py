"""Subscriptions: a customer on a plan from `starts_at` (to `ends_at`), and its billing periods."""
