"""The garbage collector, tuned for a long-lived process that allocates in bursts.

Ingestion and billing make several small objects per event or invoice, which live until their
batch or page is written. With CPython's defaults (a young collection every 700 allocations)
they reach the oldest generation within one batch, and its collections walk every object of
the process, the frameworks' own included: measured at 7 µs per ingested event in process,
about a third of reading, validating and writing it.
"""

from __future__ import annotations

import gc

# A young collection every 10,000 container allocations (net of those freed); each older one
# ten times rarer. Not rarer: what a collection costs is mostly the garbage it frees, and a
# collection pauses every call in flight. Garbage in reference cycles is freed only so, at
# 1–3 µs an object: Salesbricks calls left 43 objects each until their executor was freed on
# the spot (facades/salesbricks/schema.py). Every 10,000 allocations a collection then freed
# about 6,000 of them in 5–19 ms; every 100,000, about 80,000 in 94–145 ms (Salesbricks alone:
# p99 86 and 119 ms, against 120–167 ms in four runs). Batched ingestion would save 2–5 % of
# its CPU with the rarer collections.
THRESHOLDS = (10_000, 10, 10)


def settle() -> None:
    """Call once the process is built: what exists then (modules, schemas, the app) is never
    garbage, so it is moved out of every later collection, and collections come less often.
    Cyclic garbage is still collected; only later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
