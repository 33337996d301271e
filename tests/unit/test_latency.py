"""The recent-latency window of /health: quantiles within one bin, old slots forgotten."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tabops.telemetry.latency import RecentLatency


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_empty_window_has_no_quantiles() -> None:
    assert RecentLatency().summary() == (0, [None, None])


def test_quantiles_of_a_known_spread() -> None:
    latency = RecentLatency(clock=Clock())
    values = [0.001 * (i + 1) for i in range(100)]  # 1 ms .. 100 ms
    for v in values:
        latency.observe(v)
    count, (p50, p95) = latency.summary()
    assert count == 100
    assert p50 == pytest.approx(0.050, rel=0.06) and p95 == pytest.approx(0.095, rel=0.06)


def test_the_window_forgets_old_slots() -> None:
    clock = Clock()
    latency = RecentLatency(window_s=60, slot_s=10, clock=clock)
    latency.observe(2.0)  # slow, long ago
    clock.now += 30
    latency.observe(0.010)
    assert latency.summary((0.5,))[0] == 2
    clock.now += 40  # the first slot is now more than 60 s old
    count, (p50,) = latency.summary((0.5,))
    assert count == 1 and p50 == pytest.approx(0.010, rel=0.06)
    clock.now += 1000  # a slot reused many windows later starts from zero
    latency.observe(0.5)
    assert latency.summary((0.5,))[0] == 1


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        RecentLatency(window_s=10, slot_s=20)


@given(st.lists(st.floats(min_value=1e-4, max_value=100.0), min_size=1, max_size=300))
def test_each_quantile_is_within_one_bin_of_the_exact_one(values: list[float]) -> None:
    latency = RecentLatency(clock=Clock())
    for v in values:
        latency.observe(v)
    count, found = latency.summary((0.5, 0.95, 1.0))
    assert count == len(values)
    for q, value in zip((0.5, 0.95, 1.0), found, strict=True):
        assert value is not None
        assert value == pytest.approx(_exact(values, q), rel=0.06)
    assert found[0] <= found[1] <= found[2]  # type: ignore[operator]
