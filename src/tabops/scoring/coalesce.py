"""Request coalescing: single-record calls that arrive close together share one scoring call.

Off by default (``TABOPS_API__COALESCE_US=0``). The first call for a scorer opens a
window of ``window_s``; calls for the same scorer that arrive before it closes (or until
``max_rows`` have gathered) are scored together, each then reading its own row. It pays
where one call costs much more than one row: the scikit-learn pipeline spends ~5 ms per
call on 1 row and ~8 µs per row in a batch. The compiled scorer spends ~13 µs on 1 row,
so there it can save at most that, and each call waits up to the window:
docs/performance.md has the measurements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tabops.scoring.base import Scorer, Scores

__all__ = ["Coalescer"]


@dataclass
class _Window:
    scorer: Scorer
    records: list[Mapping[str, Any]] = field(default_factory=list)
    done: asyncio.Future[Scores] | None = None
    timer: asyncio.TimerHandle | None = None


class Coalescer:
    """Gathers concurrent single-record calls per scorer into one call.

    Args:
        window_s: How long the first call of a window waits for others.
        max_rows: A window closes at once when it holds this many records.
    """

    def __init__(self, window_s: float, max_rows: int = 256) -> None:
        self.window_s = window_s
        self.max_rows = max_rows
        self._open: dict[int, _Window] = {}
        self._running: set[asyncio.Task[None]] = set()  # referenced until done
        self.calls = 0
        """Scoring calls made (each for one or more records)."""

    async def score(self, scorer: Scorer, record: Mapping[str, Any]) -> Scores:
        """Score one record, together with the others that arrive within the window.

        Returns:
            The scores of this record alone.

        Raises:
            Whatever the scorer raised for the window's call.
        """
        loop = asyncio.get_running_loop()
        key = id(scorer)
        window = self._open.get(key)
        if window is None:
            window = self._open[key] = _Window(scorer, done=loop.create_future())
            window.timer = loop.call_later(self.window_s, self._close, key, window)
        index = len(window.records)
        window.records.append(record)
        if len(window.records) >= self.max_rows:
            self._close(key, window)
        assert window.done is not None
        scores = await asyncio.shield(window.done)
        return Scores(
            labels=scores.labels[index : index + 1],
            probabilities=scores.probabilities[index : index + 1],
            classes=scores.classes,
            threshold=scores.threshold,
        )

    def _close(self, key: int, window: _Window) -> None:
        if self._open.get(key) is not window:
            return  # closed already (full before its timer fired)
        del self._open[key]
        if window.timer is not None:
            window.timer.cancel()
        self.calls += 1
        task = asyncio.get_running_loop().create_task(self._run(window))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, window: _Window) -> None:
        assert window.done is not None
        try:
            if window.scorer.path == "pipeline":  # milliseconds: off the event loop
                scores = await asyncio.to_thread(window.scorer.score, window.records)
            else:
                scores = window.scorer.score(window.records)
        except Exception as exc:  # every call of the window gets the error
            window.done.set_exception(exc)
        else:
            window.done.set_result(scores)
