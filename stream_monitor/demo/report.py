"""The demo's printed summary (the same numbers are in summary.json)."""

from __future__ import annotations

from .drift_report import drift_lines


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def print_summary(summary: dict) -> None:
    clip, frames, latency = summary["clip"], summary["frames"], summary["latency"]
    build = summary["engine"]["build"]
    lines = ["", "stream-monitor demo — summary"]
    if clip:
        segments = " · ".join(f"{s['label']} {s['start_s']:.1f}–{s['stop_s']:.1f} s ({s['source']})"
                              for s in clip["segments"])
        lines.append(f"  source     real clip, {clip['frames']} frames at {clip['fps']:g} fps: {segments}")
    else:
        lines.append(f"  source     {summary['source']}")
    threshold = summary["engine"]["threshold"]
    lines.append(f"  engine     {build.get('backend', '?')} · {build.get('model', '?')} + {build.get('detector', '?')} · "
                 f"{summary['engine']['threads']} torch thread(s) · threshold "
                 + (f"{threshold:.4g}" if threshold is not None else "–"))
    dropped = sum(frames["dropped"].values())
    reasons = ", ".join(f"{k} {v}" for k, v in frames["dropped"].items() if v) or "none"
    lines.append(f"  frames     captured {frames['captured']} · scored {frames['scored']} · dropped {dropped} ({reasons})")
    machine = summary["machine"]
    fps = summary["throughput_fps"]
    lines.append(f"  throughput {fps if fps is not None else '–'} frames/s scored · load average "
                 f"{machine['load_average_1m']} on {machine['cpus']} CPUs")
    lines.append(f"  latency    capture→result p50 {_ms(latency['p50_ms'])} · p95 {_ms(latency['p95_ms'])} · "
                 f"p99 {_ms(latency['p99_ms'])} · max {_ms(latency['max_ms'])}")
    ends = {a["alert_id"]: a for a in summary["alerts"] if a["event"] == "end"}
    timing = summary["alert_timing"]
    starts = [a for a in summary["alerts"] if a["event"] == "start"]
    if not starts:
        lines.append("  alerts     none")
    for i, alert in enumerate(starts):
        where = ""
        if timing:
            info = next(e for e in timing["alerts"] if e["alert_id"] == alert["alert_id"])
            where = f" at {info['clip_time_s']:.1f} s into the clip, in an {info['segment']} segment"
        end = ends.get(alert["alert_id"])
        held = f", held {end['duration_s']:.1f} s, ended: {end['reason']}" if end else ", still open"
        lines.append(f"  {'alerts' if i == 0 else '':10} #{alert['alert_id']} frame {alert['seq']}{where} "
                     f"(score {alert['score']:.4g}){held}")
    if timing:
        for segment in timing["ood_segments"]:
            result = f"alert after {segment['delay_s']:.2f} s" if segment["detected"] else "NOT detected"
            lines.append(f"  OOD delay  {segment['segment']}: {result}")
        lines.append(f"  false      {timing['false_alerts']} alert(s) started in ID footage "
                     f"({timing['false_alerts_per_minute']} per minute over {timing['id_minutes']:.2f} min)")
    lines += drift_lines(summary.get("drift"))
    metrics = summary["metrics"]
    agree = (metrics["latency_count"] == frames["scored"] == frames["results_received"]
             and metrics["alerts_total"] == len(starts))
    lines.append(f"  /metrics   {'agrees with' if agree else 'DIFFERS from'} the subscriber: scored {frames['scored']}, "
                 f"results received {frames['results_received']}, alerts {metrics['alerts_total']}")
    outputs = summary["outputs"]
    lines.append(f"  outputs    {outputs['overlay_mp4']} · {outputs['audit_log']} ({outputs['audit_records']} records) · "
                 f"{outputs['summary']}")
    print("\n".join(lines), flush=True)
