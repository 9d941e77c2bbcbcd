"""Holds the live scene map's cost within a share of the engine's time, whatever the hardware.

The scene map (explanations/distinct.py) is drawn on the frames that alert, and one map costs a fixed few
milliseconds of CPU: about a third of a fast engine's per-frame time (benchmarks/results/explanation_cost-*).
Issue 18's budget is 10 % of the engine's time for the whole explanation; the map gets what the parts
every frame pays for leave (model.map_budget, 0.05 by default).

`MapBudget` is a token bucket in seconds: every batch the engine scores earns `share` × its measured time;
every map drawn spends its own measured time. A map is drawn only while the credit covers the expected
cost of one (the running mean of the measured ones), and the credit is capped at `burst` maps (a long
calm stretch does not buy an unpaced alert), so from the start

    time spent on maps ≤ share × engine time + the maps of one batch

(the credit is never below zero before a batch draws; only that batch's overrun can take it below). The
first alerting frame after a calm stretch is drawn at once: the credit is full by then. The alerting
frames it skips show their stream's latest drawn map (`pipeline/map_carry.py`), so the overlay never
alternates between two kinds of map during one alert.

Clocks are injectable: tests drive the bucket with a fake one, exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from ..errors import InputError

__all__ = ["MapBudget", "engine_time"]


class MapBudget:
    """Token bucket of map time against engine time; see the module docstring.

    share: the most the maps may cost, as a share of the engine's time (0: never draw; 1: as long as the
    engine). burst: the credit's cap, in maps. clock: seconds, monotonic."""

    def __init__(self, share: float = 0.05, burst: float = 3.0, clock: Callable[[], float] = time.perf_counter) -> None:
        if not 0.0 <= share <= 1.0:
            raise InputError(f"map budget share must be within [0, 1], got {share}")
        if burst < 1.0:
            raise InputError(f"map budget burst must be at least one map, got {burst}")
        self.share, self.burst, self.clock = float(share), float(burst), clock
        self.credit = 0.0  # seconds of map time earned and not yet spent (negative after an overrun)
        self.map_cost: float | None = None  # running mean of one map's measured seconds; None before the first
        self.engine_s = self.spent_s = 0.0  # totals, for benchmarks and tests
        self.drawn = self.skipped = 0
        self._turn = 0

    @contextmanager
    def engine(self) -> Iterator[None]:
        """Time one engine pass (graph, score, alert) and earn its share."""
        start = self.clock()
        yield
        elapsed = max(0.0, self.clock() - start)
        self.engine_s += elapsed
        # the cap is `burst` maps; before the first map is measured nothing is banked (a warm-up pass of
        # seconds would otherwise buy a whole unpaced alert)
        self.credit = min(self.credit + self.share * elapsed, self.burst * (self.map_cost or 0.0))

    def choose(self, rows: np.ndarray) -> np.ndarray:
        """Of the alerting `rows` of a batch, those whose map the credit covers now. The starting row turns
        from batch to batch, so the streams of a multi-stream batch take turns."""
        rows = np.asarray(rows)
        if self.share <= 0 or len(rows) == 0:
            self.skipped += len(rows)
            return rows[:0]
        if self.map_cost is None:  # nothing measured yet: draw one while the credit is not negative
            affordable = 1 if self.credit >= 0 else 0
        else:
            # (+1e-9: credit summed from many small earnings must not miss a map by a rounding error)
            affordable = int(max(0.0, self.credit) / self.map_cost + 1e-9) if self.map_cost > 0 else len(rows)
        take = min(len(rows), affordable)
        chosen = np.sort(np.roll(rows, -(self._turn % len(rows)))[:take])
        self._turn += 1
        self.skipped += len(rows) - take
        return chosen

    @contextmanager
    def maps(self, count: int) -> Iterator[None]:
        """Time the drawing of `count` maps and spend it."""
        start = self.clock()
        yield
        elapsed = max(0.0, self.clock() - start)
        if count > 0:
            per_map = elapsed / count
            self.map_cost = per_map if self.map_cost is None else 0.8 * self.map_cost + 0.2 * per_map
        self.credit -= elapsed
        self.spent_s += elapsed
        self.drawn += count

    def summary(self) -> dict[str, float]:
        """Totals so far: engine and map seconds, their ratio, maps drawn and skipped."""
        return {"engine_s": self.engine_s, "maps_s": self.spent_s,
                "maps_share": self.spent_s / self.engine_s if self.engine_s > 0 else 0.0,
                "drawn": self.drawn, "skipped": self.skipped}


def engine_time(budget: MapBudget | None) -> contextlib.AbstractContextManager:
    """`budget.engine()`, or nothing to time without a budget (offline commands draw every map)."""
    return budget.engine() if budget is not None else contextlib.nullcontext()
