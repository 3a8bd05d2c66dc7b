"""What the two training scripts (``train_reader``, ``train_detector``) share: their common arguments, the
learning-rate schedule and the export of small weights."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import torch

from clockwork.detect import model_store


def parser(
    prog: str, doc: str, *, out: str, total_steps: int, batch: int, lr: float, eval_n: int
) -> argparse.ArgumentParser:
    """The arguments every training command takes, with the script's own defaults."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=out, help="checkpoint directory")
    ap.add_argument("--resume", help="a last.pt to go on from")
    ap.add_argument("--minutes", type=float, default=8.0, help="stop and checkpoint after this long")
    ap.add_argument(
        "--total-steps",
        type=int,
        default=total_steps,
        help="the learning rate's cosine runs over this many steps in all; stop there",
    )
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--eval-n", type=int, default=eval_n)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def refuse_below_one(ap: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 1:
            ap.error(f"Invalid --{name.replace('_', '-')} ({getattr(args, name)}). Supported values are 1 or more.")


def learning_rate(peak: float, step: int, first: int, total: int, warmup: int) -> float:
    """A warm-up at the start of each command, then one cosine over ``total`` steps counted across commands."""
    return (
        peak * min(1.0, (step - first + 1) / warmup) * max(0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))), 0.02)
    )


def write_weights(payload: dict, dest: Path) -> str:
    """Save ``payload`` (which names its ``step``) to ``dest``; print and return the file's sha256 (to pin)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, dest)
    digest = model_store.sha256_of(dest)
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB), step {payload['step']}, sha256 {digest}")
    return digest


class Rendered(torch.utils.data.IterableDataset):
    """Endless samples of ``render(rng, split)`` (a module-level function, so that workers can take it), one
    random stream per DataLoader worker."""

    def __init__(self, render, seed: int, split: str = "train"):
        self.render, self.seed, self.split = render, seed, split

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            yield self.render(rng, self.split)


def loader(
    dataset: Rendered, batch: int, workers: int, device: torch.device, collate_fn=None
) -> torch.utils.data.DataLoader:
    """Rendering in ``workers`` processes (the GPU machine has 16 cores), batches pinned for the GPU."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        collate_fn=collate_fn,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )


def motion_blur(x: np.ndarray, rng: np.random.Generator, shortest: int, longest: int) -> np.ndarray:
    """Blur along a random direction over ``shortest`` to ``longest - 1`` pixels."""
    import cv2

    k = int(rng.integers(shortest, longest))
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2] = 1.0 / k
    kernel = cv2.warpAffine(
        kernel, cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0), (k, k)
    )
    return cv2.filter2D(x, -1, kernel / max(kernel.sum(), 1e-6))
