#!/usr/bin/env bash
# An enrolled site end to end: enroll PolypGen centre A on three of its no-polyp recordings, then replay
# through the live pipeline (stream-monitor demo: capture process, inference with the site model, alerts,
# overlay) a recording of the same centre it never saw, followed by the centre's polyp frames.
#   bash scripts/site_enrollment_demo.sh [OUT]        (default OUT: results/site-a; about 3 min on 2 cores)
# Prints the enrollment summary, the demo summary and, from the audit log, where each alert started.
set -euo pipefail
OUT=${1:-results/site-a}
DATA=$(cd "$(dirname "$0")/.." && pwd)/../shared/data
SM=${SM:-.venv/bin/stream-monitor}
rm -rf "$OUT"; mkdir -p "$OUT/enroll" "$OUT/clip"
for seq in seq03 seq05 seq07; do ln -s "$DATA/sequences/polypgen-negative/${seq}_neg" "$OUT/enroll/$seq"; done
ln -s "$DATA/sequences/polypgen-negative/seq01_neg" "$OUT/clip/1-normal-seq01"   # held apart: never enrolled
ln -s "$DATA/polypgen-positive/centre_A" "$OUT/clip/2-polyps"                       # 125 polyp frames
"$SM" enroll --source "$OUT/enroll" --site-model --out "$OUT/site_a.npz"
"$SM" demo --source "$OUT/clip" --detector "$OUT/site_a.npz" --fps 5 --out "$OUT/demo"
NORMAL=$(ls "$OUT/clip/1-normal-seq01/" | wc -l)
python3 - "$OUT/demo/alerts.jsonl" "$NORMAL" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
normal = int(sys.argv[2])
starts = [r for r in records if r.get("event") == "alert_start"]
print(f"site demo: {normal} held-apart normal frames, then polyp frames; {len(starts)} alert(s) started")
for r in starts:
    where = "normal recording (false alert)" if r["seq"] <= normal else "polyp frames"
    print(f"  alert at frame {r['seq']}: {where}")
PY
