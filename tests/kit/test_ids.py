"""Identifiers: a prefix, then 48 bits of milliseconds and 80 random bits in Crockford base32."""

from __future__ import annotations

import pytest

from meterworks.kit import ids
from meterworks.kit.ids import new_id

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _inside(millis: int) -> float:
    """An instant in the middle of that millisecond, in seconds: `millis / 1000` itself may be
    a float a hair below it (1.001 * 1000 is 1000.9999999999999)."""
    return (millis + 0.5) / 1000


def _base32(value: int) -> str:
    """26 characters, most significant first, five bits each."""
    return "".join(CROCKFORD[(value >> (5 * (25 - n))) & 31] for n in range(26))


@pytest.mark.parametrize("random_part", [0, 1, 2**80 - 1, 0x1234_5678_9ABC_DEF0_1357])
def test_an_id_is_the_instant_then_the_random_bits_in_base32(
    monkeypatch: pytest.MonkeyPatch, random_part: int
) -> None:
    millis = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
    monkeypatch.setattr(ids.time, "time", lambda: _inside(millis))
    monkeypatch.setattr(ids, "random_bytes", lambda n: random_part.to_bytes(n, "big"))
    made = new_id("inv")
    assert made == "inv_" + _base32((millis << 80) | random_part)
    digits = made[4:14].translate(str.maketrans(CROCKFORD, "0123456789abcdefghijklmnopqrstuv"))
    assert int(digits, 32) == millis  # the first ten characters: two zero bits, then the instant


def test_ids_sort_by_the_millisecond_they_were_made_in(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    for millis in (1_000, 1_001, 2_000_000_000_000):
        monkeypatch.setattr(ids.time, "time", lambda m=millis: _inside(m))
        made.append(new_id("sub"))
    assert made == sorted(made)
    assert len({new_id("sub") for _ in range(1_000)}) == 1_000
    assert all(len(i) == 30 and set(i[4:]) <= set(CROCKFORD) for i in made)


def test_random_bytes_come_from_the_operating_system_a_block_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[int] = []

    def pattern(n: int) -> bytes:
        return bytes(range(256)) * (n // 256) + bytes(range(n % 256))

    def urandom(n: int) -> bytes:
        drawn.append(n)
        return pattern(n)

    monkeypatch.setattr(ids.os, "urandom", urandom)
    entropy = ids._Entropy()
    taken = [entropy.take(10) for _ in range(409)]  # 4,090 bytes: one block
    assert drawn == [4096]
    assert b"".join(taken) == pattern(4090)
    assert entropy.take(10) == pattern(10)  # 6 bytes left: a new block, none reused
    assert entropy.take(5000) == pattern(5000)  # more than a block at once
    assert drawn == [4096, 4096, 5000]


def test_random_bytes_differ_from_call_to_call_and_across_a_fork() -> None:
    import os

    seen = {ids.random_bytes(16) for _ in range(10_000)}
    assert len(seen) == 10_000
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next bytes, to the parent
        os.write(write, ids.random_bytes(16))
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    in_child = os.read(read, 16)
    os.close(read)
    assert len(in_child) == 16
    assert in_child != ids.random_bytes(16)
