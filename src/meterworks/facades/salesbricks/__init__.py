"""The Salesbricks facade: the GraphQL Usage API (v1) and the REST usage API (v2).

Bricks are meters (by id or key), a Salesbricks subscription is a meterworks subscription, the
API token is a meterworks API key. The facade translates, then calls the usage service.
"""
