"""Results lost between the monitor and one subscriber, counted at the subscriber.

The publisher cannot see them: a ZeroMQ PUB socket drops silently at a slow subscriber's high-water
mark, which is what keeps the monitor unaffected by it. Every result carries `prev_seq`, the seq of the
previous result published for its stream, so a subscriber that last received seq a and now receives a
result with prev_seq ≠ a knows that results were lost in between (a *gap*; how many is not known when
the monitor also skipped frames). Frames the monitor itself skipped (seq − prev_seq − 1) are not gaps.
"""

from __future__ import annotations

__all__ = ["SequenceGaps"]


class SequenceGaps:
    """Per-stream gap counting over the result messages one subscriber receives, in order."""

    def __init__(self) -> None:
        self.last_seq: dict[str, int] = {}
        self.gaps = 0
        self.received = 0
        self.skipped = 0  # frames the monitor itself never scored (seq − prev_seq − 1), over all results

    def add(self, result: dict) -> bool:
        """Feed one decoded result; True when results were lost just before it."""
        stream = result["stream"]
        previous = self.last_seq.get(stream)
        self.last_seq[stream] = result["seq"]
        self.received += 1
        lost = previous is not None and result["prev_seq"] != previous
        self.gaps += lost
        if previous is not None or result["prev_seq"]:  # the first result's prev_seq may predate us
            self.skipped += max(0, result["seq"] - result["prev_seq"] - 1)
        return lost
