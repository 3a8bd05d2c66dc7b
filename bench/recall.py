"""Recall per scale, false positives on distractors, and speed, on the project's own evaluation set.

    python -m bench.recall                                   # every configuration below, CPU
    python -m bench.recall --configs default coco            # the default beside COCO's heads
    python -m bench.recall --device cuda --configs default   # on a GPU
    python -m bench.recall --configs default --head H.pt     # also with fine-tuned heads
    (clockwork.training.train_detector)
    python -m bench.recall --configs default --head H.pt --head-min-scores 0.5 0.6 0.7   # the heads at several
    thresholds

The evaluation set (``clockwork.training.evalset``) is rendered once into --data. For each configuration of
views and sampling it runs ``detect_video`` on every clip and prints recall per scale (a clip counts as
found when at least half of its processed frames have a box with IoU >= 0.3 against the truth and a
segment exists; and again counting the clip's time, ``evalset.score_clip``'s ``found_time``),
false-positive segments per minute of distractor video, and frames of video per second of wall time.
Configurations are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench._record import record
from clockwork.detect.detector import Detector
from clockwork.settings import DETECT
from clockwork.timeline.pipeline import detect_video
from clockwork.training.evalset import SCALES, score_clip, write_evalset

CONFIGS = {
    "full@every": {"views": ("full",), "sample_fps": None},  # what main did before views
    "default": {},
    # COCO's heads, three views, 0.5 (its dials read, as the default reads them)
    "coco": {"head": "none", "views": ("full", "zoomout", "tiles"), "min_score": 0.5},
    "unread": {"read_time": False},  # the default without the reader's check (every clock found kept)
    "full+tiles": {"views": ("full", "tiles")},  # the default scan without the zoomed-out view
    "full+zoomout@every": {"views": ("full", "zoomout"), "sample_fps": None},
    "all@every": {"views": ("full", "zoomout", "tiles"), "sample_fps": None},
    "all@5fps": {"views": ("full", "zoomout", "tiles"), "sample_fps": 5},
}


def run_config(items, data: Path, detector: Detector, overrides: dict) -> dict:
    rows: dict = {s: {"clips": 0, "found": 0, "found_time": 0, "iou": []} for s in SCALES}
    photo: dict = {}
    false_segments, distractor_s, video_s, wall = 0, 0.0, 0.0, 0.0
    for item in items:
        t = time.perf_counter()
        result = detect_video(data / item.name, detector=detector, **overrides)
        wall += time.perf_counter() - t
        video_s += result.duration_s
        score = score_clip(item, result)
        if item.kind == "distractor":
            false_segments += score["false_segments"]
            distractor_s += result.duration_s
        elif item.kind == "photo":
            photo[item.scale] = score["found"]
        else:
            row = rows[item.scale]
            row["clips"] += 1
            row["found"] += score["found"]
            row["found_time"] += score["found_time"]
            row["iou"].append(score["iou"])
    return {
        "rows": rows,
        "photo": photo,
        "fp_per_min": false_segments / max(distractor_s / 60, 1e-9),
        "false_segments": false_segments,
        "speed": video_s / wall,
        "wall": wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="var/evalset", help="where the evaluation set is rendered (cached)")
    ap.add_argument("--per-scale", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--head", help="also run every config with these fine-tuned heads over COCO's model, side by side")
    ap.add_argument(
        "--head-min-scores",
        nargs="+",
        type=float,
        metavar="S",
        help="run the heads at each of these min_score thresholds (default: the default min_score only)",
    )
    args = ap.parse_args()
    if args.head_min_scores and not args.head:
        ap.error("--head-min-scores needs --head")
    data = Path(args.data)
    items = write_evalset(data, per_scale=args.per_scale, seed=args.seed)
    detectors: dict = {}

    def detector(head):
        if head not in detectors:
            detectors[head] = Detector(device=args.device, half=args.device != "cpu", head=head)
        return detectors[head]

    runs = {"": (None, {})}  # suffix -> (heads over the config's own, extra overrides)
    if args.head:
        for s in args.head_min_scores or [None]:
            runs[f" + {Path(args.head).name}" + (f" @ min_score {s:g}" if s is not None else "")] = (
                args.head,
                {} if s is None else {"min_score": s},
            )
    results = {}
    for name in args.configs:
        for suffix, (head, extra) in runs.items():
            overrides = {**CONFIGS[name], **extra}
            config_head = overrides.pop("head", DETECT.head)
            results[name + suffix] = run_config(items, data, detector(head or config_head), overrides)
    lines = [
        f"{len(items)} clips of 1280x720 at 10 frames/s, 2 s each: {args.per_scale} clocks per scale "
        f"(eval styles), scikit-image's clock photograph per scale, 3 distractors per scale; seed {args.seed}; "
        f"device {args.device}. Default settings: head {DETECT.head or 'none (COCO)'}, views {','.join(DETECT.views)}, "
        f"min_score {DETECT.min_score:g}, read_time {DETECT.read_time}, "
        + (f"a scan at {DETECT.scan_fps:g} frames/s." if DETECT.scan else f"sample_fps {DETECT.sample_fps}."),
        "",
        "| config | " + " | ".join(f"recall {s}" for s in SCALES) + " | photo found | false segments/min | "
        "video s per wall s |",
        "|---" * (len(SCALES) + 4) + "|",
    ]
    for name, r in results.items():
        recalls = [
            f"{row['found']}/{row['clips']} ({100 * row['found'] / max(row['clips'], 1):.0f}%)"
            for row in r["rows"].values()
        ]
        photos = ",".join(s for s, ok in r["photo"].items() if ok) or "none"
        lines.append(
            f"| {name} | " + " | ".join(recalls) + f" | {photos} | {r['fp_per_min']:.2f} ({r['false_segments']}) | "
            f"{r['speed']:.3f} |"
        )
    lines += [
        "",
        "Recall counting the clip's time (`found_time`: each frame counts as the examined frame nearest to it; "
        "the same as above for evenly spaced frames, fair to a scan, whose examined frames crowd around changes):",
        "",
        "| config | " + " | ".join(f"recall {s}" for s in SCALES) + " |",
        "|---" * (len(SCALES) + 1) + "|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{row['found_time']}/{row['clips']} ({100 * row['found_time'] / max(row['clips'], 1):.0f}%)"
                for row in r["rows"].values()
            )
            + " |"
        )
    record("bench/recall.py: recall per scale on the evaluation set", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
