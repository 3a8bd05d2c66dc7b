"""Summarise py-spy's raw (collapsed) stacks: where a process spends its samples, by function.

    python -m bench.spy_report replica-threads.txt [replica-gil.txt ...] [--top 25]

Each line of a raw file is ``frame;frame;...;frame COUNT`` (outermost first; py-spy's ``--format raw``). For every
file: samples in all, then the functions by self samples (the innermost frame) and by inclusive samples (anywhere
on the stack, once a sample), with line numbers dropped so one function is one row. ``bench/gpu.py --py-spy``
writes such files.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def function(frame: str) -> str:
    """``name (path/file.py:123)`` -> ``name (file.py)``; thread and process frames stay as they are."""
    frame = _LINE.sub(")", frame.strip())
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')')).name})" if where else name


def summarise(path: Path) -> tuple[int, Counter, Counter]:
    total, own, inclusive = 0, Counter(), Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [function(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    return total, own, inclusive


def report(path: Path, top: int) -> list[str]:
    total, own, inclusive = summarise(path)
    lines = [f"#### {path.name}: {total} samples", "", "| function | self | inclusive |", "|---|---|---|"]
    names = [f for f, _ in own.most_common(top)]
    names += [f for f, _ in inclusive.most_common(top) if f not in names][: max(0, top - len(names))]
    for f in sorted(names, key=lambda f: (-own[f], -inclusive[f])):
        lines.append(f"| `{f}` | {own[f] / max(total, 1):.1%} | {inclusive[f] / max(total, 1):.1%} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    for f in args.files:
        print("\n".join(report(f, args.top)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
