"""Wall time of `stream-monitor enroll --site-model` (NERO threshold + site model) for 5 minutes of 1080p footage at
1 frame/s (300 frames), on this machine as it is (the load average is recorded: the machine is shared).

    python benchmarks/enroll_time.py      # → benchmarks/results/enroll_time-<cpu>-torch<v>.{json,md}
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, cpu_flags, cpu_name, load, slug, versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / ".cache" / "enroll-5min-1fps.mp4"
TARGET_S = 120.0


def main() -> int:
    if not CLIP.is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_enroll_clip.py"), str(CLIP)], check=True)
    out = ROOT / ".cache" / "enroll-5min.npz"
    load_before = load()
    started = time.perf_counter()
    run = subprocess.run([str(Path(sys.executable).with_name("stream-monitor")), "enroll", "--source", str(CLIP),
                          "--every-s", "1", "--site-model", "--out", str(out)],
                         capture_output=True, text=True, check=True)  # the site model is opt-in
    wall = time.perf_counter() - started
    summary = json.loads(run.stdout[run.stdout.index("\n{") + 1:run.stdout.rindex("}") + 1])  # notes around the JSON
    result = {"benchmark": "enroll_time", "cpu": cpu_name(), "cores": load_before["cores"], "flags": cpu_flags(),
              "versions": versions(), "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "footage": "300 frames, 1920x1080, 1 frame/s (scripts/make_enroll_clip.py)",
              "wall_s": wall, "command_reported_s": summary["seconds"], "target_s": TARGET_S,
              "within_target": wall <= TARGET_S, "summary": summary,
              "load_before": load_before, "load_after": load()}
    name = f"enroll_time-{slug(' '.join(cpu_name().split()[:2]))}-torch{torch.__version__.split('+')[0]}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# enroll_time", "", f"{result['cpu']}, {result['cores']} cores; "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + f"; {result['time']}", "",
             f"`stream-monitor enroll --site-model` on {result['footage']}: **{wall:.1f} s** wall (target ≤ {TARGET_S:.0f} s: "
             f"{'met' if result['within_target'] else 'NOT met'}); site memory {summary['site_model']['memory_size']} "
             f"patches from {summary['site_model']['groups']} blocks.",
             f"Load average before / after: {load_before['loadavg_1_5_15']} / {result['load_after']['loadavg_1_5_15']} "
             f"on {result['cores']} cores (the machine is shared: a load near the core count means other jobs ran)."]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
