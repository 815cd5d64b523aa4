"""The Saaslogic facade: Saaslogic's billing API paths and shapes over meterworks' domain.

A Saaslogic client changes its base URL to `/saaslogic/v1` and keeps its calls. This package only
translates: tokens, usage reports and reads, customers and plans; every rule lives in the domain.
"""
