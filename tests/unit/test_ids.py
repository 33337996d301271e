"""UUIDv7 ids: valid (RFC 9562 version and variant), unique, ordered by their millisecond."""

from __future__ import annotations

import time
import uuid

import pytest

from tabops.ids import uuid7, uuid7_many


@pytest.mark.parametrize("n", [1, 2, 16, 17, 1000])
def test_ids_carry_the_version_the_variant_and_the_time(n: int) -> None:
    before = time.time_ns() // 1_000_000
    ids = uuid7_many(n)
    after = time.time_ns() // 1_000_000
    assert len(ids) == len(set(ids)) == n
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical: lower case, dashed
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after


def test_later_ids_sort_after_earlier_ones() -> None:
    first = uuid7()
    time.sleep(0.002)
    assert uuid7_many(1)[0] > first and uuid7_many(100)[0] > first
    # the random bits are random: no two of many ids alike, in either path
    assert len({uuid7() for _ in range(5000)}) == 5000
