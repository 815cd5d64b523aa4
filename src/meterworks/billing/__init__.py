"""Billing: rating usage, invoices and their lifecycle, billing views and the scheduler.

Transports call `meterworks.billing.service.BillingService`. This package module imports nothing
itself, so the pure `billing.pricing` can be loaded without any database code.
"""
