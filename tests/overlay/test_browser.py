"""`stream-monitor demo --serve`: the live overlay as MJPEG over HTTP, opened in a real headless browser.

One demo process serves all three tests (module fixture); the last one stops it with SIGINT, as a
user's Ctrl-C would, and checks that it exits cleanly with its summary written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_monitor import bundled
from tests.commands.processes import default_sigint

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except OSError:
        return None


@pytest.fixture(scope="module")
def served_demo(tmp_path_factory, live_model):
    out = tmp_path_factory.mktemp("demo")
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(out / "demo.log", "w")
    process = subprocess.Popen(
        # the shipped detector: its explanation artifact beside it gives the overlay the thumbnail panel
        [sys.executable, "-m", "stream_monitor.cli", "demo", "--serve", f"127.0.0.1:{port}", "--out", str(out),
         "--model", str(live_model.checkpoint), "--detector", str(bundled.DETECTOR),
         "--id-images", "4", "--ood-images", "4"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=default_sigint)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while _fetch(url + "snapshot.jpg") is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the demo did not serve a frame:\n" + (out / "demo.log").read_text())
        time.sleep(0.5)
    yield url, process, out
    if process.poll() is None:  # a test failed before the last one stopped it
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log.close()


def _is_overlay(image: np.ndarray) -> bool:
    """The overlay's layout: a state banner at the top left — green, red or amber while the replay runs,
    grey ("STREAM ENDED", overlay/stream_state.py) once it ended — and the dark panel on the right."""
    banner = image[8:38, 8:200].reshape(-1, 3).mean(axis=0)  # BGR
    green, red, amber = banner[1] > 120 > banner[2], banner[2] > 150 > banner[1], banner[2] > 200 and banner[1] > 120
    ended = np.ptp(banner) < 12 and 70 < banner.mean() < 160
    if ended:
        return bool(np.all(image[60:200, image.shape[1] - 300:image.shape[1] - 40].mean(axis=(0, 1)) < 90))
    panel = image[60:200, image.shape[1] - 300:image.shape[1] - 40].reshape(-1, 3).mean(axis=0)
    return bool((green or red or amber) and np.all(panel < 90))


def _has_thumbnail_panel(overlay: np.ndarray) -> bool:
    """The explanation panel (overlay/explanation_panel.py): the named neurons are rows of training-patch
    thumbnails at the panel's left, below the gauge — coloured pixels where the older panel drew only
    grey text. Holds for a dimmed "ended" frame too (its colours shrink by half, they do not vanish)."""
    panel = overlay[:, overlay.shape[1] - 330:].astype(int)
    region = panel[180:420, 14:76]
    coloured = (np.abs(region[..., 2] - region[..., 0]) > 15) | (np.abs(region[..., 2] - region[..., 1]) > 15)
    return bool(coloured.mean() > 0.15)


def test_demo_serves_the_live_overlay_as_mjpeg(served_demo):
    url, _, _ = served_demo
    page = _fetch(url).decode()
    assert '<img id="live" src="stream.mjpg"' in page
    with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = stream.read(200).decode("latin-1")
        assert head.startswith("--smframe") and "Content-Type: image/jpeg" in head
    snapshot = cv2.imdecode(np.frombuffer(_fetch(url + "snapshot.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert snapshot.shape[0] == 480 and _is_overlay(snapshot)
    assert _has_thumbnail_panel(snapshot)


def test_the_page_shows_the_overlay_in_headless_chromium(served_demo, tmp_path):
    """A real browser loads the page (HTML + multipart MJPEG) and its screenshot shows the overlay."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (/usr/bin/chromium): `scripts/setup.sh --system` "
                    "installs it (as root), or `apt-get install chromium`")
    url, _, _ = served_demo
    shot = tmp_path / "page.png"
    result = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                             "--window-size=1000,560", "--timeout=5000", f"--screenshot={shot}", url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (560, 1000)
    overlay = image[:480, :]
    width = int(np.flatnonzero(overlay[240].sum(axis=1) > 0).max()) + 1  # the image's right edge
    assert _is_overlay(overlay[:, :width])
    # the page background is #111 (17): the overlay image ends where row 240 stops differing from it
    right = int(np.flatnonzero(np.abs(overlay[240].astype(int) - 17).sum(axis=1) > 9).max()) + 1
    cv2.imwrite(str(tmp_path / "overlay.png"), overlay[:, :right])
    assert _has_thumbnail_panel(overlay[:, :right]), f"no thumbnail panel in {tmp_path / 'overlay.png'}"


def test_demo_stops_cleanly_on_ctrl_c_with_its_summary(served_demo):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) ends the demo with status 0, and
    summary.json, the annotated MP4 and the audit log are written."""
    _, process, out = served_demo
    deadline = time.monotonic() + 120
    while "press Ctrl-C" not in (out / "demo.log").read_text():
        assert time.monotonic() < deadline and process.poll() is None, (out / "demo.log").read_text()
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 0, (out / "demo.log").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"]["captured"] == summary["clip"]["frames"] == 24
    assert summary["frames"]["results_received"] == summary["frames"]["scored"] > 0
    assert all(code == 0 for code in summary["exit_codes"].values())
    assert (out / "demo_overlay.mp4").stat().st_size > 0
    events = [json.loads(line)["event"] for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert events[0] == "session_start" and events[-1] == "session_end"
    assert "stream-monitor demo — summary" in (out / "demo.log").read_text()
    assert not Path(f"/dev/shm/sm-demo{process.pid}-endoscope").exists()  # the ring was unlinked
