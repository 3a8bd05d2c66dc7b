"""Where a segment becomes a clip: a frame-accurate, fast-seek cut normalised to one profile.

Every snippet gets the same profile (default 1280x720, 30 fps, H.264 yuv420p, AAC 48 kHz stereo;
letterboxed; a silent track when the source has none) so that the joiner can concatenate them with
``-c copy``. The cut puts ``-ss`` before ``-i``: ffmpeg seeks to the keyframe before the start and
decodes only from there, discarding frames up to the exact start, so the cost follows the snippet's
length, not its offset in the file (the original seeked after ``-i`` and decoded from the start).
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import imagehash
from PIL import Image

from clockwork._logging import logger
from clockwork.errors import FFmpegError
from clockwork.settings import CLIPS
from clockwork.video import ffmpeg

PHASH_SAMPLES = (0.2, 0.4, 0.6, 0.8)  # relative times of the frames hashed per snippet


@dataclass(frozen=True)
class Profile:
    width: int = CLIPS.width
    height: int = CLIPS.height
    fps: int = CLIPS.fps
    audio_rate: int = 48000
    crf: int = 20
    threads: int = CLIPS.threads  # ffmpeg threads; Ray tasks reserve this many CPUs

    def video_filter(self) -> str:
        w, h = self.width, self.height
        return (
            f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:black,"
            f"setsar=1,fps={self.fps},format=yuv420p"
        )


@functools.lru_cache(maxsize=2)
def choose_encoder(binary: str | None = None) -> str:
    """``h264_nvenc`` when this ffmpeg has it and a GPU encoder really works (a tiny test encode),
    else ``libx264``. H100 and A100 have no NVENC, so there the answer is libx264."""
    binary = binary or ffmpeg.ffmpeg_bin()
    choice = "libx264"
    if "h264_nvenc" in ffmpeg.encoders(binary):
        probe = subprocess.run(
            [
                binary,
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "color=s=256x256:d=0.2",
                "-c:v",
                "h264_nvenc",
                "-f",
                "null",
                "-",
            ],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            choice = "h264_nvenc"
        else:
            # expected wherever there is no NVENC card (H100, A100, no GPU): one line, the details at DEBUG
            logger.debug("h264_nvenc test encode failed: %s", probe.stderr.strip()[-400:])
    logger.info("snippet encoder: %s%s", choice, "" if choice == "h264_nvenc" else " (no working NVENC here)")
    return choice


def cut_command(
    source: Path,
    start_s: float,
    end_s: float,
    out: Path,
    *,
    has_audio: bool,
    profile: Profile = Profile(),
    encoder: str = "libx264",
) -> list[str]:
    """ffmpeg arguments (without the binary) for one normalised snippet."""
    duration = max(end_s - start_s, 1.0 / profile.fps)
    args = ["-y", "-ss", f"{start_s:.3f}", "-i", str(source)]
    if not has_audio:
        args += ["-f", "lavfi", "-i", f"anullsrc=r={profile.audio_rate}:cl=stereo"]
    args += [
        "-t",
        f"{duration:.3f}",
        "-map",
        "0:v:0",
        "-map",
        "0:a:0" if has_audio else "1:a:0",
        "-vf",
        profile.video_filter(),
        "-threads",
        str(profile.threads),
    ]
    args += _encode_args(out, profile, encoder)
    return args


def _encode_args(out: Path, profile: Profile, encoder: str) -> list[str]:
    """The one set of output options every snippet and card shares, so the joiner can ``-c copy`` them."""
    if encoder == "h264_nvenc":
        args = ["-c:v", "h264_nvenc", "-preset", "p4", "-cq", str(profile.crf)]
    else:
        args = ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(profile.crf)]
    return args + [
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(profile.fps * 2),
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ar",
        str(profile.audio_rate),
        "-ac",
        "2",
        "-video_track_timescale",
        str(profile.fps * 512),
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(out),
    ]


def card_command(
    out: Path,
    duration_s: float,
    shows_minutes: int,
    *,
    profile: Profile = Profile(),
    encoder: str = "libx264",
    offset_s: int = 0,
) -> list[str]:
    """A black card of ``duration_s`` showing the time of day, running from ``shows_minutes`` after midnight
    plus ``offset_s`` whole seconds (a later piece of a long card; 24-hour HH:MM, drawn by ffmpeg's drawtext
    from the frame's own time), with a silent stereo track."""
    w, h, fps = profile.width, profile.height, profile.fps
    clock = r"%{pts\:gmtime\:" + str(int(shows_minutes) * 60 + int(offset_s)) + r"\:%H\\\:%M}"
    text = f"drawtext=text='{clock}':fontcolor=white:fontsize={h // 6}:x=(w-tw)/2:y=(h-th)/2"
    return [
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"color=c=black:s={w}x{h}:r={fps}",
        "-f",
        "lavfi",
        "-i",
        f"anullsrc=r={profile.audio_rate}:cl=stereo",
        "-t",
        f"{duration_s:.3f}",
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-vf",
        f"{text},setsar=1,format=yuv420p",
        "-threads",
        str(profile.threads),
        *_encode_args(out, profile, encoder),
    ]


def card(
    out: Path,
    duration_s: float,
    shows_minutes: int,
    *,
    profile: Profile = Profile(),
    encoder: str = "libx264",
    offset_s: int = 0,
) -> Path:
    """Render one card (``card_command``) to ``out``, through a temporary name."""
    return _render(
        card_command(
            Path(f"{out}.part.mp4"), duration_s, shows_minutes, profile=profile, encoder=encoder, offset_s=offset_s
        ),
        Path(out),
        what=f"rendering a {duration_s:.1f} s card",
    )


def _render(args: list[str], out: Path, *, what: str) -> Path:
    tmp = Path(args[-1])
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        ffmpeg.run(args, what=what)
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise FFmpegError(f"ffmpeg wrote no output {what}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def seek_after_input_command(
    source: Path,
    start_s: float,
    end_s: float,
    out: Path,
    *,
    has_audio: bool,
    profile: Profile = Profile(),
    encoder: str = "libx264",
) -> list[str]:
    """The original splitter's command shape (``-ss`` after ``-i``: decodes from the file start), same profile.
    Kept for the benchmark that compares the two."""
    args = cut_command(source, start_s, end_s, out, has_audio=has_audio, profile=profile, encoder=encoder)
    i = args.index("-ss")
    ss = args[i : i + 2]
    del args[i : i + 2]
    j = args.index("-t")
    return args[:j] + ss + args[j:]


def cut(
    source: Path,
    start_s: float,
    end_s: float,
    out: Path,
    *,
    has_audio: bool,
    profile: Profile = Profile(),
    encoder: str = "libx264",
) -> Path:
    """Cut one snippet to ``out``, written to a temporary name and renamed only when complete."""
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.part.mp4")
    return _render(
        cut_command(source, start_s, end_s, tmp, has_audio=has_audio, profile=profile, encoder=encoder),
        out,
        what=f"cutting {Path(source).name} {start_s:.3f}-{end_s:.3f}",
    )


def perceptual_hash(path: Path, samples=PHASH_SAMPLES) -> str:
    """pHash (imagehash) of the first frames at or after relative times ``samples``, concatenated as hex."""
    hashes: list[str] = []
    last = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / av.time_base
        targets = [duration * s for s in samples]
        for frame in container.decode(stream):
            last = frame
            while len(hashes) < len(targets) and (frame.time or 0.0) >= targets[len(hashes)]:
                hashes.append(str(imagehash.phash(frame.to_image())))
            if len(hashes) == len(targets):
                break
    if last is None:
        raise FFmpegError(f"no frame to hash in {path}")
    while len(hashes) < len(samples):  # a clip shorter than its own duration claims
        hashes.append(str(imagehash.phash(last.to_image())))
    return "".join(hashes)


def hash_distance(a: str, b: str) -> int:
    """Hamming distance between two concatenated hashes of equal length."""
    if len(a) != len(b):
        return 1 << 16
    return sum(bin(int(x, 16) ^ int(y, 16)).count("1") for x, y in zip(a, b, strict=True))


def thumbnail_jpeg(path: Path, at_s: float, width: int = 320) -> bytes:
    """One JPEG frame from ``path`` near ``at_s``."""
    import io

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        best = None
        for frame in container.decode(stream):
            best = frame
            if (frame.time or 0.0) >= at_s:
                break
    if best is None:
        raise FFmpegError(f"no frame in {path}")
    image: Image.Image = best.to_image()
    image.thumbnail((width, width))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return buf.getvalue()
