"""Benign changes a capture chain makes to a frame, for the robustness benchmark
(benchmarks/benign_change.py): none of them changes what the endoscope sees, so an OOD monitor should not
alert more often after them than before.

Each change maps a list of BGR uint8 frames to a list of BGR uint8 frames (the H.264 round trip needs the
whole list: it is a video). The result then goes the live path's way: scope mask, 224×224 resize.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError

Frames = list[np.ndarray]


def jpeg(quality: int) -> Callable[[Frames], Frames]:
    """Re-encode as JPEG at `quality` (OpenCV's libjpeg, 4:2:0) and decode again."""
    def change(frames: Frames) -> Frames:
        out = []
        for frame in frames:
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise InputError(f"JPEG encoding at quality {quality} failed")
            out.append(cv2.imdecode(data, cv2.IMREAD_COLOR))
        return out
    return change


def border_crop(fraction: float) -> Callable[[Frames], Frames]:
    """Trim `fraction` of the height and width from each side (a capture card's overscan / re-framing)."""
    def change(frames: Frames) -> Frames:
        out = []
        for frame in frames:
            h, w = frame.shape[:2]
            dy, dx = round(h * fraction), round(w * fraction)
            out.append(np.ascontiguousarray(frame[dy:h - dy, dx:w - dx]))
        return out
    return change


def shift(fraction: float) -> Callable[[Frames], Frames]:
    """Move the picture right and down by `fraction` of its size; black fills the uncovered border."""
    def change(frames: Frames) -> Frames:
        out = []
        for frame in frames:
            h, w = frame.shape[:2]
            dy, dx = round(h * fraction), round(w * fraction)
            moved = np.zeros_like(frame)
            moved[dy:, dx:] = frame[:h - dy, :w - dx]
            out.append(moved)
        return out
    return change


def brightness(factor: float) -> Callable[[Frames], Frames]:
    """Multiply every pixel by `factor` (clipped to 0-255, rounded)."""
    return lambda frames: [cv2.convertScaleAbs(f, alpha=float(factor), beta=0.0) for f in frames]


def gamma(value: float) -> Callable[[Frames], Frames]:
    """Gamma curve 255·(x/255)^value through a lookup table."""
    table = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** float(value)), 0, 255).astype(np.uint8)
    return lambda frames: [cv2.LUT(f, table) for f in frames]


def capture_1080p(frames: Frames) -> Frames:
    """What a capture card delivers: the picture scaled (aspect kept) to 1080 rows and centred on a black
    1920×1080 frame. The live path's scope mask then finds and crops it before the 224×224 resize."""
    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        scale = min(1080 / h, 1920 / w)
        nh, nw = round(h * scale), round(w * scale)
        canvas = np.zeros((1080, 1920, 3), np.uint8)
        top, left = (1080 - nh) // 2, (1920 - nw) // 2
        canvas[top:top + nh, left:left + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
        out.append(canvas)
    return out


def h264_round_trip(frames: Frames, crf: int = 23, hold: int = 3, fps: int = 10) -> Frames:
    """Encode the frames as one H.264 stream per frame size (libx264 via PyAV, yuv420p, `crf`), each frame
    held `hold` frames as live video holds a scene, and return the decoded middle copy of each (a
    predicted frame, not only the key frame). Odd sizes are padded by one black row/column for 4:2:0."""
    import av  # the benchmark extra; bundles FFmpeg with libx264

    out: list[np.ndarray | None] = [None] * len(frames)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        by_size.setdefault(frame.shape[:2], []).append(i)
    for (h, w), indices in by_size.items():
        eh, ew = h + h % 2, w + w % 2
        decoded = _encode_decode(av, [frames[i] for i in indices], eh, ew, crf, hold, fps)
        for k, i in enumerate(indices):
            out[i] = np.ascontiguousarray(decoded[k * hold + hold // 2][:h, :w])
    return out  # type: ignore[return-value]


def _encode_decode(av, frames: Frames, height: int, width: int, crf: int, hold: int, fps: int) -> Frames:
    import io

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in frames:
            padded = np.zeros((height, width, 3), np.uint8)
            padded[:frame.shape[0], :frame.shape[1]] = frame
            for _ in range(hold):
                for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="bgr24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, "r") as container:
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    if len(decoded) != len(frames) * hold:
        raise InputError(f"H.264 round trip returned {len(decoded)} frames for {len(frames) * hold}")
    return decoded


CHANGES: dict[str, Callable[[Frames], Frames]] = {
    "none": lambda frames: list(frames),
    "jpeg q90": jpeg(90), "jpeg q75": jpeg(75), "jpeg q60": jpeg(60),
    "h264 crf23": h264_round_trip,
    "capture 1080p -> scope mask -> 224": capture_1080p,
    "crop 1%": border_crop(0.01), "crop 2%": border_crop(0.02), "crop 3%": border_crop(0.03),
    "shift 1%": shift(0.01), "shift 3%": shift(0.03),
    "brightness -10%": brightness(0.9), "brightness +10%": brightness(1.1),
    "gamma 0.9": gamma(0.9), "gamma 1.1": gamma(1.1),
}
"""Name -> change, in the order the report lists them; "none" is the unchanged reference."""


def changed_images(paths, change: str | Callable[[Frames], Frames]):  # type: ignore[no-untyped-def]
    """(N, 3, 224, 224) float32 tensor: the images at `paths` after `change` (a name of CHANGES, or any
    frames → frames function), taken the live path's way (ScopeMasker("auto") per image, then the resize and
    normalisation of preprocess_batch)."""
    import torch

    from ..capture.scope_mask import ScopeMasker
    from ..data.images import read_image
    from ..preprocess import preprocess_batch

    apply = CHANGES[change] if isinstance(change, str) else change
    frames = apply([read_image(p) for p in paths])
    return torch.from_numpy(preprocess_batch([ScopeMasker("auto").apply(f) for f in frames]))


CHANGES_VERSION = 1
"""Bump when a change's code changes what it produces: cached changed features (changed_features) are keyed by it."""


def changed_features(model, paths, change: str | Callable[[Frames], Frames], with_stats: bool = False,
                     batch: int = 24, cache_dir: Path | None = None, fingerprint: str | None = None) -> np.ndarray:
    """(N, D) float32 pooled features of the images at `paths` after `change` (`changed_images`, then the
    model); with `with_stats`, (N, D + S) `[features | block statistics]` (models/block_stats.py).

    With `cache_dir`, a named change's result is kept on disk, keyed by the model (`fingerprint`, computed when
    not given), the files (path and content, as the feature cache), the change, the batching (the H.264 round
    trip encodes each batch as one video), CHANGES_VERSION and the OpenCV / PyAV versions that encode; a refit
    with other detector options then skips every forward pass. A change given as a function is never cached."""
    cache_file = None
    if cache_dir is not None and isinstance(change, str):
        cache_file = Path(cache_dir) / "changed" / f"{_changed_key(model, paths, change, with_stats, batch, fingerprint)}.npz"
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as cached:
                return cached["features"]
    features = _changed_features(model, paths, change, with_stats, batch)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, features=features)
        os.replace(tmp, cache_file)
    return features


def _changed_key(model, paths, change: str, with_stats: bool, batch: int,  # type: ignore[no-untyped-def]
                 fingerprint: str | None) -> str:
    import hashlib
    import importlib.metadata

    from ..data.features import inputs_key, model_fingerprint

    try:
        av_version = importlib.metadata.version("av")
    except importlib.metadata.PackageNotFoundError:
        av_version = None
    files = inputs_key(fingerprint or model_fingerprint(model), paths)  # model, preprocessing, paths and contents
    payload = json.dumps([files, change, bool(with_stats), int(batch), CHANGES_VERSION, cv2.__version__, av_version])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _changed_features(model, paths, change: str | Callable[[Frames], Frames], with_stats: bool,  # type: ignore[no-untyped-def]
                      batch: int) -> np.ndarray:
    import torch

    from ..models.block_stats import forward_with_stats

    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch):
            images = changed_images(paths[start:start + batch], change)
            if with_stats:
                features, _, stats = forward_with_stats(model, images)
                out.append(torch.cat([features, stats], dim=1).float().numpy())
            else:
                out.append(model(images)[1].float().numpy())
    return np.concatenate(out)
