"""The map budget (explanations/pacing.py), driven by a fake clock so every duration is exact: maps never
cost more than their share of the engine's time (plus one batch's maps), the first alerting frame is
drawn at once, a calm stretch banks at most `burst` maps (a warm-up pass none), and the rows of a
multi-stream batch take turns."""

from __future__ import annotations

import numpy as np
import pytest

from stream_monitor.errors import InputError
from stream_monitor.explanations.pacing import MapBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _batch(budget: MapBudget, clock: FakeClock, engine_s: float, map_s: float, alerting: int) -> np.ndarray:
    """One batch: the engine takes engine_s, then each chosen alerting row's map takes map_s."""
    with budget.engine():
        clock.now += engine_s
    rows = budget.choose(np.arange(alerting))
    with budget.maps(len(rows)):
        clock.now += map_s * len(rows)
    return rows


@pytest.mark.parametrize("share, engine_s, map_s", [(0.10, 0.0105, 0.0026), (0.10, 0.0226, 0.0026),
                                                    (0.25, 0.010, 0.040)])
def test_maps_cost_at_most_their_share_of_the_engine_time(share, engine_s, map_s):
    clock = FakeClock()
    budget = MapBudget(share, clock=clock)
    drawn = sum(len(_batch(budget, clock, engine_s, map_s, alerting=1)) for _ in range(2000))
    summary = budget.summary()
    assert summary["maps_s"] <= share * summary["engine_s"] + map_s + 1e-9
    # and it is not stingy: it draws what the share pays for, less at most the first map's overdraft and
    # the credit left at the end (under one map plus one batch's earnings)
    assert drawn >= share * summary["engine_s"] / map_s - 2
    assert summary["drawn"] == drawn and summary["skipped"] == 2000 - drawn


def test_the_first_alerting_frame_is_drawn_at_once_even_after_a_long_warm_up():
    clock = FakeClock()
    budget = MapBudget(0.10, clock=clock)
    assert len(_batch(budget, clock, engine_s=3.0, map_s=0.0, alerting=0)) == 0  # warm-up: 3 s, no alert
    assert len(_batch(budget, clock, engine_s=0.01, map_s=0.004, alerting=1)) == 1
    # the 3 s warm-up banked nothing: the next map waits for 0.004 s of credit, i.e. 0.04 s of engine time
    pattern = [len(_batch(budget, clock, engine_s=0.01, map_s=0.004, alerting=1)) for _ in range(12)]
    assert pattern == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]


def test_a_calm_stretch_banks_at_most_burst_maps():
    clock = FakeClock()
    budget = MapBudget(0.10, burst=3, clock=clock)
    _batch(budget, clock, engine_s=0.01, map_s=0.004, alerting=1)  # the first map measures the cost
    for _ in range(1000):  # 10 s of calm footage: would pay for 250 maps unbounded
        _batch(budget, clock, engine_s=0.01, map_s=0.004, alerting=0)
    pattern = [len(_batch(budget, clock, engine_s=0.01, map_s=0.004, alerting=1)) for _ in range(8)]
    # the banked three at once, then one per 0.004 s of credit (0.001 s per batch)
    assert pattern == [1, 1, 1, 0, 1, 0, 0, 0]


def test_the_rows_of_a_batch_take_turns():
    clock = FakeClock()
    budget = MapBudget(0.5, clock=clock)
    counts = np.zeros(4, int)
    for _ in range(400):  # four alerting streams per batch, credit for one map per batch
        np.add.at(counts, _batch(budget, clock, engine_s=0.01, map_s=0.005, alerting=4), 1)
    assert counts.sum() >= 395 and counts.max() - counts.min() <= 1


def test_a_zero_share_never_draws_and_bad_settings_are_refused():
    clock = FakeClock()
    budget = MapBudget(0.0, clock=clock)
    assert sum(len(_batch(budget, clock, 0.01, 0.001, alerting=2)) for _ in range(100)) == 0
    with pytest.raises(InputError, match="share"):
        MapBudget(1.5)
    with pytest.raises(InputError, match="burst"):
        MapBudget(0.1, burst=0.5)
