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


def test_threads_never_draw_the_same_random_bytes() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def draw(_: int) -> list[str]:
        return [uuid7() for _ in range(2000)]

    with ThreadPoolExecutor(8) as pool:
        ids = [i for batch in pool.map(draw, range(8)) for i in batch]
    assert len(set(ids)) == len(ids) == 16000


def test_a_forked_worker_does_not_reuse_its_parents_random_bytes() -> None:
    """The pool is buffered: a child inheriting it would make its parent's next ids."""
    import os

    from tabops.ids import random_bytes

    random_bytes(16)  # the parent has a filled pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draw, to the parent
        os.write(write, random_bytes(64))
        os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 64
    assert child != random_bytes(64)
