"""The garbage collector, tuned for a long-lived process that allocates in bursts.

Ingestion and billing make several small objects per event or invoice, which live until their
batch or page is written. With CPython's defaults (a young collection every 700 allocations)
they reach the oldest generation within one batch, and its collections walk every object of
the process, the frameworks' own included: measured at 7 µs per ingested event in process,
about a third of reading, validating and writing it.
"""

from __future__ import annotations

import gc

# A young collection every 100,000 container allocations (net of those freed); each older one
# ten times rarer. At 10,000, a batch of 10,000 events still met several young collections,
# each walking what the batch had built so far: over `python -m bench ingest` each server process
# spent 0.17–0.37 s of its 7–10 s of CPU in them, against at most one collection (0.05 s) now.
# Most objects of a call are freed on the spot; only what outlives it counts towards the
# threshold.
THRESHOLDS = (100_000, 10, 10)


def settle() -> None:
    """Call once the process is built: what exists then (modules, schemas, the app) is never
    garbage, so it is moved out of every later collection, and collections come less often.
    Cyclic garbage is still collected; only later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
