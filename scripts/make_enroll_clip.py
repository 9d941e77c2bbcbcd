"""Five minutes of normal colonoscopy at 1 frame/s as one 1080p video, to time `stream-monitor enroll`.

The first 300 PolypGen no-polyp frames (../shared/data/sequences/polypgen-negative, sequences in order),
each resized to 1920 × 1080 as a capture card would deliver them, written at 1 frame/s (MP4, mp4v).

    python scripts/make_enroll_clip.py .cache/enroll-5min-1fps.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

from stream_monitor.data.images import list_images, read_image
from stream_monitor.evaluation.datasets import SHARED_DATA

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/enroll-5min-1fps.mp4")
out.parent.mkdir(parents=True, exist_ok=True)
files = list_images(SHARED_DATA / "sequences" / "polypgen-negative", recursive=True)[:300]
writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 1.0, (1920, 1080))
for path in files:
    writer.write(cv2.resize(read_image(path), (1920, 1080), interpolation=cv2.INTER_AREA))
writer.release()
print(f"wrote {out}: {len(files)} frames at 1 frame/s")
