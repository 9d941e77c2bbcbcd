"""The drift signal in the demo summary: when "input not validated" was raised and cleared, against the
clip's ID / OOD segments, and whether /metrics counted the same raises as the subscriber saw."""

from __future__ import annotations

from .clip import ClipInfo
from .summary import metric

__all__ = ["drift_lines", "drift_summary"]


def drift_summary(results: list[dict], clip: ClipInfo | None, samples: dict) -> dict | None:
    with_drift = [r for r in results if "drift" in r]
    if not with_drift:
        return None
    events, raised = [], False
    for r in with_drift:
        if r["drift"]["raised"] != raised:
            raised = r["drift"]["raised"]
            event = {"event": "raise" if raised else "clear", "seq": r["seq"], "share": r["drift"]["share"]}
            if clip is not None:
                segment = clip.segment_of(min(max(r["seq"] - 1, 0), clip.frames - 1))
                event.update(clip_time_s=round((r["seq"] - 1) / clip.fps, 2), segment=segment.label,
                             into_segment_s=round((r["seq"] - 1 - segment.start) / clip.fps, 2))
            events.append(event)
    return {"events": events, "raised_at_end": raised, "final_share": with_drift[-1]["drift"]["share"],
            "expected_share": with_drift[-1]["drift"]["expected"],
            "metrics_raises_total": int(metric(samples, "stream_monitor_drift_raises_total")) if samples else None}


def drift_lines(drift: dict | None) -> list[str]:
    if drift is None:
        return ["  drift      off (drift.enabled: false)"]
    if not drift["events"]:
        return [f"  drift      input validated throughout (share over threshold {drift['final_share']:.0%}, "
                f"expected {drift['expected_share']:.0%})"]
    lines = []
    for i, e in enumerate(drift["events"]):
        where = f" at {e['clip_time_s']:.1f} s, {e['into_segment_s']:.1f} s into an {e['segment']} segment" if "segment" in e else ""
        what = "INPUT NOT VALIDATED raised" if e["event"] == "raise" else "validated again"
        lines.append(f"  {'drift' if i == 0 else '':10} {what} at frame {e['seq']}{where} (recent share {e['share']:.0%})")
    raises = sum(e["event"] == "raise" for e in drift["events"])
    if drift["metrics_raises_total"] is not None:
        agree = "agrees" if drift["metrics_raises_total"] == raises else "DIFFERS"
        lines.append(f"  {'':10} /metrics {agree}: stream_monitor_drift_raises_total {drift['metrics_raises_total']}")
    return lines
