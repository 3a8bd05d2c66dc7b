"""A reproducible sample library: short H.264 videos with drawn analog clocks at known times.

The clocks show times a few minutes apart (10:10 to 10:15), so that the demo's time-of-day remix
(``jobs.join --order time-of-day``) runs a few minutes in real time, as in The Clock.

``write_samples(DIR)`` renders every clip with ffmpeg (lavfi backgrounds, a clock face drawn here and
overlaid with ``enable='between(t,a,b)'``) and writes ``manifest.json`` with, for each file, the
intervals when a clock is visible and the times it shows. The demo and the tests use it.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from clockwork.video import ffmpeg

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ClockSpec:
    start_s: float
    end_s: float
    size: int
    x: str  # ffmpeg overlay expressions; t is seconds
    y: str
    hour: int = 10
    minute: int = 10


@dataclass(frozen=True)
class ClipSpec:
    name: str
    width: int
    height: int
    fps: str  # an ffmpeg rate: "30", "30000/1001"
    duration_s: float
    background: str  # a lavfi source, formatted with w, h, r, d
    audio: bool
    clocks: tuple[ClockSpec, ...] = ()
    portrait_by_rotation: bool = False  # store landscape + a display matrix; displayed portrait
    duplicate_of: str | None = None  # a re-encode of another clip (same footage uploaded twice)
    tags: tuple[str, ...] = field(default=())


GRADIENT = "gradients=s={w}x{h}:r={r}:d={d}:speed=0.015:seed=7"
SAMPLES: tuple[ClipSpec, ...] = (
    ClipSpec(
        "clock_static_720p30.mp4",
        1280,
        720,
        "30",
        6.0,
        GRADIENT,
        True,
        (ClockSpec(1.0, 4.0, 260, "(W-w)/2", "(H-h)/2", 10, 10),),
    ),
    ClipSpec(
        "clock_moving_360p25.mp4",
        640,
        360,
        "25",
        8.0,
        GRADIENT,
        False,
        (ClockSpec(0.5, 3.0, 130, "40+(t-0.5)*120", "60", 10, 12), ClockSpec(5.0, 7.0, 150, "420", "(H-h)/2", 10, 15)),
    ),
    ClipSpec(
        "clock_portrait_2997.mp4",
        360,
        640,
        "30000/1001",
        5.0,
        GRADIENT,
        True,
        (ClockSpec(1.5, 4.0, 200, "(W-w)/2", "200", 10, 11),),
        portrait_by_rotation=True,
    ),
    ClipSpec(
        "clock_60fps_480p.mp4",
        640,
        480,
        "60",
        4.0,
        GRADIENT,
        False,
        (ClockSpec(0.5, 2.5, 180, "100+(t-0.5)*60", "(H-h)/2", 10, 13),),
    ),
    ClipSpec("distractor_fractal_30.mp4", 640, 360, "30", 4.0, "mandelbrot=s={w}x{h}:r={r}", True),
    ClipSpec(
        "distractor_life_25.mp4",
        480,
        272,
        "25",
        4.0,
        # a fixed grid (one the default finds no clock on), so every render is the same clip; bench.life measures random
        # ones
        "life=s={w}x{h}:r={r}:mold=10:ratio=0.1:death_color=#204060:life_color=#c0a040:seed=3",
        False,
    ),
    ClipSpec(
        "clock_static_720p30_reupload.mp4",
        960,
        540,
        "30",
        6.0,
        "",
        True,
        (ClockSpec(1.0, 4.0, 0, "", ""),),
        duplicate_of="clock_static_720p30.mp4",
    ),
)


def draw_clock(diameter: int, hour: int = 10, minute: int = 10) -> np.ndarray:
    """An analog clock face as RGBA uint8: rim, ticks, numerals, hands."""
    d = diameter
    img = np.zeros((d, d, 4), np.uint8)
    c, r = d // 2, int(d * 0.46)
    cv2.circle(img, (c, c), r, (40, 40, 40, 255), -1, cv2.LINE_AA)
    cv2.circle(img, (c, c), int(r * 0.9), (245, 245, 240, 255), -1, cv2.LINE_AA)
    for i in range(60):
        a = math.radians(i * 6)
        length = 0.12 if i % 5 == 0 else 0.05
        thick = max(1, d // 60) if i % 5 == 0 else max(1, d // 150)
        p1 = (int(c + math.sin(a) * r * 0.85), int(c - math.cos(a) * r * 0.85))
        p2 = (int(c + math.sin(a) * r * (0.85 - length)), int(c - math.cos(a) * r * (0.85 - length)))
        cv2.line(img, p1, p2, (20, 20, 20, 255), thick, cv2.LINE_AA)
    scale = d / 400
    for n in range(1, 13):
        a = math.radians(n * 30)
        tx, ty = int(c + math.sin(a) * r * 0.62), int(c - math.cos(a) * r * 0.62)
        (tw, th), _ = cv2.getTextSize(str(n), cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, int(2 * scale)))
        cv2.putText(
            img,
            str(n),
            (tx - tw // 2, ty + th // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (20, 20, 20, 255),
            max(1, int(2 * scale)),
            cv2.LINE_AA,
        )
    ha, ma = math.radians((hour % 12) * 30 + minute * 0.5), math.radians(minute * 6)
    cv2.line(
        img,
        (c, c),
        (int(c + math.sin(ha) * r * 0.45), int(c - math.cos(ha) * r * 0.45)),
        (10, 10, 10, 255),
        max(2, d // 30),
        cv2.LINE_AA,
    )
    cv2.line(
        img,
        (c, c),
        (int(c + math.sin(ma) * r * 0.7), int(c - math.cos(ma) * r * 0.7)),
        (10, 10, 10, 255),
        max(2, d // 45),
        cv2.LINE_AA,
    )
    cv2.circle(img, (c, c), max(2, d // 40), (200, 30, 30, 255), -1)
    return img


def _render(spec: ClipSpec, out: Path, tmp: Path) -> None:
    d = f"{spec.duration_s:g}"
    if spec.duplicate_of:
        source = out.parent / spec.duplicate_of
        ffmpeg.run(
            [
                "-y",
                "-i",
                str(source),
                "-vf",
                f"scale={spec.width}:{spec.height}",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "30",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "96k",
                "-movflags",
                "+faststart",
                str(out),
            ],
            what=f"rendering {out.name}",
        )
        return
    inputs = ["-f", "lavfi", "-i", spec.background.format(w=spec.width, h=spec.height, r=spec.fps, d=d)]
    chain, last = [], "0:v"
    for i, clock in enumerate(spec.clocks, start=1):
        png = tmp / f"{out.stem}-clock{i}.png"
        cv2.imwrite(str(png), cv2.cvtColor(draw_clock(clock.size, clock.hour, clock.minute), cv2.COLOR_RGBA2BGRA))
        inputs += ["-loop", "1", "-framerate", spec.fps, "-t", d, "-i", str(png)]
        chain.append(
            f"[{last}][{i}:v]overlay=x='{clock.x}':y='{clock.y}':enable='between(t,{clock.start_s},{clock.end_s})'[v{i}]"
        )
        last = f"v{i}"
    if spec.portrait_by_rotation:
        chain.append(f"[{last}]transpose=clock[vt]")
        last = "vt"
    chain.append(f"[{last}]format=yuv420p[vout]")
    audio_map: list[str] = []
    if spec.audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={d}"]
        audio_map = ["-map", f"{len(spec.clocks) + 1}:a", "-c:a", "aac", "-b:a", "96k"]
    target = tmp / out.name if spec.portrait_by_rotation else out
    ffmpeg.run(
        [
            "-y",
            *inputs,
            "-filter_complex",
            ";".join(chain),
            "-map",
            "[vout]",
            *audio_map,
            "-t",
            d,
            "-r",
            spec.fps,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-g",
            "48",
            "-movflags",
            "+faststart",
            str(target),
        ],
        what=f"rendering {out.name}",
    )
    if spec.portrait_by_rotation:
        # ffmpeg 5.1 turns the legacy "rotate" tag into a display matrix on stream copy.
        ffmpeg.run(
            [
                "-y",
                "-i",
                str(target),
                "-c",
                "copy",
                "-metadata:s:v:0",
                "rotate=90",
                "-movflags",
                "+faststart",
                str(out),
            ],
            what=f"tagging {out.name}",
        )


def manifest_entry(spec: ClipSpec) -> dict:
    clocks = spec.clocks
    if spec.duplicate_of:
        clocks = next(s for s in SAMPLES if s.name == spec.duplicate_of).clocks
    return {
        "width": spec.width,
        "height": spec.height,
        "fps": spec.fps,
        "duration_s": spec.duration_s,
        "audio": spec.audio,
        "rotation": 90 if spec.portrait_by_rotation else 0,
        "duplicate_of": spec.duplicate_of,
        "clock_intervals": [[c.start_s, c.end_s] for c in clocks],
        "clock_times": [f"{c.hour}:{c.minute:02d}" for c in clocks],
    }


def write_samples(directory: str | Path, *, force: bool = False) -> Path:
    """Render the sample library into ``directory`` (skipping files already there) and return the manifest path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"version": 1, "files": {}}
    try:
        before = load_manifest(directory)["files"]
    except (OSError, ValueError, KeyError):
        before = {}
    with tempfile.TemporaryDirectory(prefix="clockwork-samples-") as tmp:
        for spec in SAMPLES:
            out = directory / spec.name
            if (
                force or not out.exists() or before.get(spec.name) != manifest_entry(spec)
            ):  # missing or made to another spec
                part = directory / f".{spec.name}.part.mp4"
                _render(spec, part, Path(tmp))
                part.replace(out)
            manifest["files"][spec.name] = manifest_entry(spec)
    path = directory / MANIFEST
    part = path.with_suffix(".json.part")
    part.write_text(json.dumps(manifest, indent=2) + "\n")
    part.replace(path)
    return path


def load_manifest(directory: str | Path) -> dict:
    return json.loads((Path(directory) / MANIFEST).read_text())


# -- a long film with clocks in known places (the scan benchmark) ---------------------------------

FILM_FACES = ((10, 10), (3, 40), (7, 25), (12, 0), (4, 50), (9, 5))


def film_plan(minutes: float, *, seed: int = 0, width: int = 1280, height: int = 720) -> list[dict]:
    """Where the clocks of a generated film are: each of ``FILM_FACES`` at its own size and place, shown in
    windows of 3-20 s with 20-120 s of nothing between appearances (any face), in the film's seconds."""
    import random

    rng = random.Random(seed)
    duration = minutes * 60.0
    faces = []
    for k, (hour, minute) in enumerate(FILM_FACES):
        size = rng.choice((110, 160, 220, 300, min(height - 40, 520)))
        faces.append(
            {
                "hour": hour,
                "minute": minute,
                "size": size,
                "x": rng.randrange(0, width - size),
                "y": rng.randrange(0, height - size),
                "windows": [],
                "k": k,
            }
        )
    t = rng.uniform(5.0, 30.0)
    while True:
        length = rng.uniform(3.0, 20.0)
        if t + length > duration - 2.0:
            break
        faces[rng.randrange(len(faces))]["windows"].append((round(t, 2), round(t + length, 2)))
        t += length + rng.uniform(20.0, 120.0)
    return faces


def write_film(
    out: str | Path, minutes: float, *, seed: int = 0, width: int = 1280, height: int = 720, fps: int = 25
) -> dict:
    """Render a ``minutes``-long H.264 film (a slowly moving gradient, no audio) with the clocks of
    :func:`film_plan`, and return its truth: ``{"duration_s", "fps", "clock_intervals": [[a, b], ...]}``."""
    out = Path(out)
    faces = [f for f in film_plan(minutes, seed=seed, width=width, height=height) if f["windows"]]
    d = f"{minutes * 60:g}"
    with tempfile.TemporaryDirectory(prefix="clockwork-film-") as tmp:
        inputs = ["-f", "lavfi", "-i", GRADIENT.format(w=width, h=height, r=fps, d=d)]
        chain, last = [], "0:v"
        for i, face in enumerate(faces, start=1):
            png = Path(tmp) / f"clock{i}.png"
            cv2.imwrite(
                str(png), cv2.cvtColor(draw_clock(face["size"], face["hour"], face["minute"]), cv2.COLOR_RGBA2BGRA)
            )
            inputs += ["-i", str(png)]
            enable = "+".join(f"between(t,{a},{b})" for a, b in face["windows"])
            chain.append(f"[{i}:v]loop=loop=-1:size=1,setpts=N/{fps}/TB[c{i}]")
            chain.append(f"[{last}][c{i}]overlay=x={face['x']}:y={face['y']}:shortest=1:enable='{enable}'[v{i}]")
            last = f"v{i}"
        chain.append(f"[{last}]format=yuv420p[vout]")
        part = out.with_name(f".{out.name}.part.mp4")
        ffmpeg.run(
            [
                "-y",
                *inputs,
                "-filter_complex",
                ";".join(chain),
                "-map",
                "[vout]",
                "-t",
                d,
                "-r",
                str(fps),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "26",
                "-g",
                str(fps * 4),
                "-movflags",
                "+faststart",
                str(part),
            ],
            what=f"rendering {out.name}",
        )
        part.replace(out)
    intervals = sorted(w for f in faces for w in f["windows"])
    return {
        "duration_s": minutes * 60.0,
        "fps": fps,
        "clock_intervals": [list(w) for w in intervals],
        "faces": [{k: v for k, v in f.items() if k != "k"} for f in faces],
    }
