"""Where detections are drawn on frames, for people: boxes, labels, scores and the time a dial shows.

In the style of supervision's annotators: an annotator holds the look, ``annotate(image, detections)``
draws on a copy. Used by the web pages (a frame with its boxes) and by ``clockwork annotate VIDEO``
(an annotated video or a folder of annotated frames).

    from clockwork.remix.annotate import BoxAnnotator, frame_at
    frame = frame_at("film.mp4", 12.5)                 # RGB uint8, the frame shown at 12.5 s
    image = BoxAnnotator().annotate(frame, detections)
"""

from __future__ import annotations

import bisect
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from clockwork.errors import FFmpegError
from clockwork.settings import SEGMENTS
from clockwork.timeline.result import Detection, VideoResult
from clockwork.video import ffmpeg as ff
from clockwork.video.decode import VideoDecoder

# One colour per track (RGB), cycling; detections without a track take the first.
PALETTE = ((255, 64, 64), (64, 160, 255), (255, 200, 0), (80, 220, 120), (220, 90, 255), (255, 140, 40))


@dataclass(frozen=True)
class BoxAnnotator:
    thickness: int = 2
    font_scale: float = 0.5
    show_time: bool = True

    def color(self, detection: Detection) -> tuple[int, int, int]:
        return PALETTE[(detection.track or 0) % len(PALETTE)]

    def label_of(self, detection: Detection) -> str:
        text = f"{detection.label} {detection.score:.2f}"
        if self.show_time and detection.clock_time is not None:
            text += f" {detection.clock_time.hhmm}"
        return text

    def annotate(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """A copy of ``image`` (H x W x 3 uint8) with each detection's box and label drawn on it."""
        out = np.ascontiguousarray(image).copy()
        h, w = out.shape[:2]
        thickness = max(self.thickness, round(min(h, w) / 360))
        scale = self.font_scale * max(1.0, min(h, w) / 480)
        for d in detections:
            color = self.color(d)
            x0, y0 = int(round(max(d.x, 0))), int(round(max(d.y, 0)))
            x1, y1 = int(round(min(d.x + d.w, w - 1))), int(round(min(d.y + d.h, h - 1)))
            cv2.rectangle(out, (x0, y0), (x1, y1), color, thickness)
            text = self.label_of(d)
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            ty = y0 - 4 if y0 - th - base - 4 >= 0 else min(y1 + th + 4, h - base)
            cv2.rectangle(out, (x0, ty - th - base), (min(x0 + tw + 4, w - 1), ty + base), color, -1)
            cv2.putText(out, text, (x0 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
        return out


def frame_at(path: str | Path, t_s: float) -> np.ndarray:
    """The frame displayed at ``t_s`` seconds (RGB uint8, rotation applied)."""
    with VideoDecoder(path, start_s=max(t_s - 1e-3, 0.0)) as dec:
        for frame in dec:
            return frame.image
    with VideoDecoder(path) as dec:  # past the end: the last frame
        image = None
        for frame in dec:
            image = frame.image
    if image is None:
        raise ValueError(f"{path}: no frame could be decoded")
    return image


def thumbnail(
    image: np.ndarray, detections: Sequence[Detection], *, max_width: int, annotator: BoxAnnotator | None = None
) -> np.ndarray:
    """``image`` scaled down to ``max_width`` and then boxed, so labels are drawn at the size they are seen."""
    scale = min(1.0, max_width / image.shape[1])
    if scale < 1.0:
        image = cv2.resize(image, (max_width, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        detections = [replace(d, x=d.x * scale, y=d.y * scale, w=d.w * scale, h=d.h * scale) for d in detections]
    return (annotator or BoxAnnotator()).annotate(image, detections)


def jpeg(image: np.ndarray, *, max_width: int | None = None, quality: int = 85) -> bytes:
    """RGB uint8 -> JPEG bytes, scaled down to ``max_width`` if wider."""
    if max_width and image.shape[1] > max_width:
        scale = max_width / image.shape[1]
        image = cv2.resize(image, (max_width, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class TrackBoxes:
    """A result's boxes on every frame, not only on the frames examined: between two examined frames of one
    track at most ``max_gap_s`` apart (the segment rule's gap, which a scan's coarse step never exceeds), the
    box moves linearly from one to the other. A box without a track shows until the next examined frame."""

    def __init__(self, result: VideoResult, *, max_gap_s: float | None = None):
        frame_s = 1.0 / result.fps if result.fps else 0.0
        self.max_gap_s = (SEGMENTS.gap_s if max_gap_s is None else max_gap_s) + frame_s + 1e-6
        self.tracks: dict[object, list[tuple[float, Detection]]] = {}
        for f in result.frame_data:
            for i, d in enumerate(f.detections):
                key = d.track if d.track is not None else ("untracked", f.frame_no, i)
                self.tracks.setdefault(key, []).append((f.timestamp_s, d))
        self.times = {key: [t for t, _ in seen] for key, seen in self.tracks.items()}

    def at(self, t_s: float) -> list[Detection]:
        """The boxes shown at time ``t_s`` (a frame's own timestamp)."""
        shown = []
        for key, seen in self.tracks.items():
            i = bisect.bisect_right(self.times[key], t_s + 1e-6) - 1
            if i < 0:
                continue
            t0, d0 = seen[i]
            if abs(t_s - t0) <= 1e-6:
                shown.append(d0)
            elif isinstance(key, tuple):  # untracked: held until the next examined frame
                if t_s - t0 <= self.max_gap_s:
                    shown.append(d0)
            elif i + 1 < len(seen) and seen[i + 1][0] - t0 <= self.max_gap_s:
                t1, d1 = seen[i + 1]
                a = (t_s - t0) / (t1 - t0)
                shown.append(
                    replace(
                        d0,
                        x=d0.x + a * (d1.x - d0.x),
                        y=d0.y + a * (d1.y - d0.y),
                        w=d0.w + a * (d1.w - d0.w),
                        h=d0.h + a * (d1.h - d0.h),
                        score=min(d0.score, d1.score),
                    )
                )
        return shown


def annotate_video(
    path: str | Path,
    result: VideoResult,
    out: str | Path,
    *,
    annotator: BoxAnnotator | None = None,
) -> Path:
    """Every frame of ``path`` with the result's boxes drawn, carried along each track between the frames
    examined (:class:`TrackBoxes`), encoded with libx264 to ``out`` (.mp4; written to a temporary name and
    renamed when complete), or written as JPEG files into ``out`` when it is a folder (frames with a box)."""
    annotator = annotator or BoxAnnotator()
    boxes = TrackBoxes(result)
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        out.mkdir(parents=True, exist_ok=True)
        with VideoDecoder(path) as dec:
            for frame in dec:
                shown = boxes.at(frame.timestamp_s)
                if shown:
                    (out / f"frame_{frame.index:06d}.jpg").write_bytes(jpeg(annotator.annotate(frame.image, shown)))
        return out
    part = out.with_name(f".{out.stem}.part{out.suffix}")
    with VideoDecoder(path) as dec:
        w, h, fps = dec.info.width, dec.info.height, dec.info.fps or 25.0
        cmd = [
            ff.ffmpeg_bin(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{w}x{h}",
            "-r",
            f"{fps:.6f}",
            "-i",
            "-",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "veryfast",
            "-movflags",
            "+faststart",
            str(part),
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        assert proc.stdin is not None  # stdin=PIPE
        try:
            for frame in dec:
                proc.stdin.write(annotator.annotate(frame.image, boxes.at(frame.timestamp_s)).tobytes())
        finally:
            proc.stdin.close()
            code = proc.wait()
    if code != 0:
        part.unlink(missing_ok=True)
        raise FFmpegError(f"ffmpeg could not encode {out} (exit status {code})", cmd=cmd)
    part.replace(out)
    return out
