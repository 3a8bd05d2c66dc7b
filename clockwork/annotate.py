"""Where detections are drawn on frames, for people: boxes, labels, scores and the time a dial shows.

In the style of supervision's annotators: an annotator holds the look, ``annotate(image, detections)``
draws on a copy. Used by the web pages (a frame with its boxes) and by ``clockwork annotate VIDEO``
(an annotated video or a folder of annotated frames).

    from clockwork.annotate import BoxAnnotator, frame_at
    frame = frame_at("film.mp4", 12.5)                 # RGB uint8, the frame shown at 12.5 s
    image = BoxAnnotator().annotate(frame, detections)
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from clockwork import ffmpeg as ff
from clockwork.decode import VideoDecoder
from clockwork.errors import FFmpegError
from clockwork.result import Detection, VideoResult

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
        return image


def jpeg(image: np.ndarray, *, max_width: int | None = None, quality: int = 85) -> bytes:
    """RGB uint8 -> JPEG bytes, scaled down to ``max_width`` if wider."""
    if max_width and image.shape[1] > max_width:
        scale = max_width / image.shape[1]
        image = cv2.resize(image, (max_width, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def annotate_video(path: str | Path, result: VideoResult, out: str | Path, *, annotator: BoxAnnotator | None = None,
                   ) -> Path:
    """Every frame of ``path`` with the result's boxes drawn (a frame without detections of its own shows
    the last detected frame's boxes until the next detection), encoded with libx264 to ``out`` (.mp4),
    or written as JPEG files into ``out`` when it is a folder (only frames with detections)."""
    annotator = annotator or BoxAnnotator()
    by_frame = {f.frame_no: f.detections for f in result.frame_data}
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        out.mkdir(parents=True, exist_ok=True)
        with VideoDecoder(path) as dec:
            for frame in dec:
                if by_frame.get(frame.index):
                    (out / f"frame_{frame.index:06d}.jpg").write_bytes(jpeg(annotator.annotate(frame.image, by_frame[frame.index])))
        return out
    hold = max(1, round(result.fps / (result.sample_fps or result.fps))) if result.fps else 1
    with VideoDecoder(path) as dec:
        w, h, fps = dec.info.width, dec.info.height, dec.info.fps or 25.0
        cmd = [ff.ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", f"{fps:.6f}", "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", str(out)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        shown, shown_at = [], -10**9
        try:
            for frame in dec:
                if frame.index in by_frame:
                    shown, shown_at = by_frame[frame.index], frame.index
                elif frame.index - shown_at >= hold:
                    shown = []
                proc.stdin.write(annotator.annotate(frame.image, shown).tobytes())
        finally:
            proc.stdin.close()
            code = proc.wait()
    if code != 0:
        raise FFmpegError(f"ffmpeg could not encode {out} (exit status {code})", cmd=cmd)
    return out
