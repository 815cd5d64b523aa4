"""Identifiers: a short type prefix and a time-ordered random part (sortable, index-friendly)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
# Two characters per 10 bits: 13 look-ups for an id instead of 26 (a billing run makes two
# ids per subscription).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def new_id(prefix: str) -> str:
    """`mtr_01j9...`: 48 bits of milliseconds then 80 random bits, 26 base32 characters."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{''.join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])}"


def random_secret(nbytes: int = 24) -> str:
    """A URL-safe secret with `nbytes` of entropy."""
    value = int.from_bytes(os.urandom(nbytes), "big")
    chars = []
    for _ in range((nbytes * 8 + 4) // 5):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(chars)
