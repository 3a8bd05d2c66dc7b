"""`make demo`: the main job on the embedded default model and the sample library.

Generates the sample library, finds clocks in every file, and prints the segments found beside the
ground truth. Exits non-zero when a ground-truth interval is missed by more than 0.5 s at either end
or a distractor shows a clock.
"""

from __future__ import annotations

import sys
from pathlib import Path

from clockwork.cli import hms
from clockwork.detector import Detector
from clockwork.pipeline import detect_video
from clockwork.samples import load_manifest, write_samples

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "var" / "samples"
TOLERANCE_S = 0.5


def main() -> int:
    write_samples(SAMPLES)
    manifest = load_manifest(SAMPLES)
    detector = Detector()
    failures = 0
    for name, entry in manifest["files"].items():
        result = detect_video(SAMPLES / name, detector=detector)
        found = [(s.start_s, s.end_s) for s in result.segments if s.label == "clock"]
        truth = entry["clock_intervals"]
        ok = len(found) == len(truth) and all(
            abs(a - c) <= TOLERANCE_S and abs(b - d) <= TOLERANCE_S for (a, b), (c, d) in zip(found, truth))
        failures += not ok
        print(f"{'ok  ' if ok else 'MISS'} {name}")
        print(f"     truth: {', '.join(f'{hms(a)}-{hms(b)}' for a, b in truth) or 'no clock'}")
        print(f"     found: {', '.join(f'{hms(a)}-{hms(b)}' for a, b in found) or 'no clock'}")
    print(f"\n{len(manifest['files']) - failures}/{len(manifest['files'])} files match their ground truth "
          f"within {TOLERANCE_S} s; sample library in {SAMPLES}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
