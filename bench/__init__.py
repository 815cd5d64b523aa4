"""The meterworks benchmark suite: the real server, as a separate process, against its floors.

Run it with `make bench` (durable PostgreSQL beside it) or `python -m bench [NAME ...]`; see
`bench/README.md`.
"""
