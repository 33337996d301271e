"""Recent latency of one process, cheap enough to record on every request.

Prometheus holds the real latency histograms (``/metrics``); this is for a person reading
``GET /health``: the p50 and p95 of the last few minutes, without a query. Each
observation adds one to a count in a log-spaced bin (10% wide) of the current time slot;
slots older than the window are reused. A quantile is read by merging the slots of the
window, so it is exact to within one bin (about 5%).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["RecentLatency"]

_LOWEST_S = 50e-6
"""Upper bound of the first bin; faster requests count there."""
_GROWTH = 1.1
_BINS = 200
"""50 us x 1.1**199 is about 2.4 hours: anything slower counts in the last bin."""
_LOG_GROWTH = math.log(_GROWTH)


class RecentLatency:
    """Latency quantiles over a sliding window, in time slots.

    Args:
        window_s: How far back the quantiles look.
        slot_s: Width of one time slot; the window moves on in steps of this.
        clock: Seconds, monotonic (a test may pass its own).
    """

    def __init__(
        self,
        window_s: float = 300.0,
        slot_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0 or slot_s <= 0 or slot_s > window_s:
            raise ValueError("need 0 < slot_s <= window_s")
        self.window_s = window_s
        self.slot_s = slot_s
        self._clock = clock
        self._n = math.ceil(window_s / slot_s)
        self._epochs = [-1] * self._n
        self._counts = [[0] * _BINS for _ in range(self._n)]

    @staticmethod
    def _bin(seconds: float) -> int:
        if seconds <= _LOWEST_S:
            return 0
        return min(_BINS - 1, math.ceil(math.log(seconds / _LOWEST_S) / _LOG_GROWTH))

    @staticmethod
    def _value(index: int) -> float:
        """A representative value of a bin: the geometric middle of its bounds."""
        if index == 0:
            return _LOWEST_S
        return float(_LOWEST_S * _GROWTH ** (index - 0.5))

    def observe(self, seconds: float) -> None:
        """Count one request that took ``seconds``."""
        epoch = int(self._clock() // self.slot_s)
        slot = epoch % self._n
        counts = self._counts[slot]
        if self._epochs[slot] != epoch:
            counts[:] = [0] * _BINS
            self._epochs[slot] = epoch
        counts[self._bin(seconds)] += 1

    def _merged(self) -> list[int]:
        now = int(self._clock() // self.slot_s)
        merged = [0] * _BINS
        for epoch, counts in zip(self._epochs, self._counts, strict=True):
            if now - self._n < epoch <= now:
                for i, c in enumerate(counts):
                    if c:
                        merged[i] += c
        return merged

    def summary(self, quantiles: tuple[float, ...] = (0.5, 0.95)) -> tuple[int, list[float | None]]:
        """The number of requests in the window and each quantile in seconds (None if none).

        Args:
            quantiles: Each in (0, 1].
        """
        merged = self._merged()
        total = sum(merged)
        values: list[float | None] = []
        for q in quantiles:
            if total == 0:
                values.append(None)
                continue
            rank, seen = max(1, math.ceil(q * total)), 0
            for i, c in enumerate(merged):
                seen += c
                if seen >= rank:
                    values.append(self._value(i))
                    break
        return total, values
