"""Train the clock reader on clocks rendered on the fly. Reproduces clockwork/models/clock_reader.pt.

    python -m clockwork.training.train_reader --out ckpt/ --minutes 8              # a first run (GPU machine)
    python -m clockwork.training.train_reader --out ckpt/ --resume ckpt/last.pt --minutes 8   # go on
    python -m clockwork.training.train_reader --export ckpt/last.pt                # small fp16 weights into the package

Each sample is drawn by ``render_sample``: a random "train" style (``clockwork.training.clockface``) at a random
time, with a second hand or not, warped in perspective and rolled a little, composited on a photograph
or texture, cropped around the dial with the box jittered as a detector's would be, then degraded:
lighting, a shadow gradient, glare, motion or Gaussian blur, downscaling to 16-96 px and back, JPEG,
noise and stray lines. 15% are unreadable (blurred past reading, hands hidden, a blank dial, or no
clock at all) and teach the "readable" head. The minute target is soft: a Gaussian over +-2 minutes on
the circle. Rendering runs in DataLoader workers (the GPU machine has 16 cores); the step runs in bf16.
Each command stops cleanly after --minutes, writing ``last.pt`` (the averaged and the trained weights, and
the step) and ``opt.pt`` (the optimiser) to --out; the learning rate follows one cosine over --total-steps,
counted across resumed commands, after a short warm-up at the start of each command.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from clockwork.timeread.clocktime import circular_error
from clockwork.timeread.reader import INPUT, MINUTES, WEIGHTS, ReaderNet, crop_box, decode, to_tensor
from clockwork.training import common as training
from clockwork.training.clockface import ClockStyle, composite, draw_clock_face, random_style

UNREADABLE = 0.15
_TEXTURES: list[np.ndarray] = []


def _textures() -> list[np.ndarray]:
    if not _TEXTURES:
        import skimage.data

        for name in (
            "astronaut",
            "coffee",
            "chelsea",
            "rocket",
            "brick",
            "gravel",
            "grass",
            "camera",
            "coins",
            "moon",
            "text",
            "page",
            "immunohistochemistry",
            "colorwheel",
        ):
            img = getattr(skimage.data, name)()
            if img.ndim == 2:
                img = np.dstack([img] * 3)
            _TEXTURES.append(np.ascontiguousarray(img[..., :3]))
    return _TEXTURES


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    if rng.random() < 0.25:
        bg = np.full((size, size, 3), rng.integers(0, 256, size=3), np.uint8)
        return np.clip(bg + rng.normal(0, rng.uniform(0, 20), bg.shape), 0, 255).astype(np.uint8)
    tex = _textures()[rng.integers(len(_textures()))]
    h, w = tex.shape[:2]
    scale = size / min(h, w) * rng.uniform(1.0, 2.5)
    sw, sh = (
        max(size, int(w * scale)),
        max(size, int(h * scale)),
    )  # the texture scaled, of which a size x size window is cut
    y, x = rng.integers(0, sh - size + 1), rng.integers(0, sw - size + 1)
    m = np.float32(
        [[sw / w, 0, -float(x)], [0, sh / h, -float(y)]]
    )  # scale and cut in one warp: only the window is computed
    return cv2.warpAffine(tex, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _warp(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = rgba.shape[0]
    src = np.float32([[0, 0], [s, 0], [s, s], [0, s]])
    dst = src + rng.uniform(-0.15, 0.15, size=(4, 2)).astype(np.float32) * s
    roll = math.radians(rng.uniform(-12, 12))
    c = s / 2
    rot = np.float32([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    dst = (dst - c) @ rot.T + c
    dst -= dst.min(axis=0)
    out = int(math.ceil(dst.max())) + 1
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    return cv2.warpPerspective(rgba, m, (out, out), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))


def _degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32)
    x = x * rng.uniform(0.55, 1.3) + rng.uniform(-25, 25)
    x *= rng.uniform(0.85, 1.15, size=3)
    if rng.random() < 0.35:  # a shadow across the dial
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:INPUT, 0:INPUT] / INPUT - 0.5
        g = np.clip(0.5 + (np.cos(a) * xx + np.sin(a) * yy) * rng.uniform(1, 4), 0, 1)
        x *= (1 - rng.uniform(0.3, 0.7) * g)[..., None]
    if rng.random() < 0.2:  # glare
        glare = np.zeros((INPUT, INPUT), np.float32)
        cv2.ellipse(
            glare,
            (int(rng.integers(INPUT)), int(rng.integers(INPUT))),
            (int(rng.integers(8, 40)), int(rng.integers(4, 20))),
            float(rng.uniform(0, 180)),
            0,
            360,
            1.0,
            -1,
        )
        glare = cv2.GaussianBlur(glare, (0, 0), 6)
        x += glare[..., None] * rng.uniform(60, 200)
    if rng.random() < 0.2:  # stray lines
        for _ in range(int(rng.integers(1, 4))):
            p1, p2 = rng.integers(0, INPUT, size=2), rng.integers(0, INPUT, size=2)
            cv2.line(
                x,
                tuple(int(v) for v in p1),
                tuple(int(v) for v in p2),
                tuple(float(v) for v in rng.uniform(0, 255, 3)),
                int(rng.integers(1, 3)),
                cv2.LINE_AA,
            )
    x = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.2:
        x = training.motion_blur(x, rng, 3, 8)
    elif rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.3, 1.3)))
    if rng.random() < 0.5:  # a small clock: down to 16-96 px and back up
        s = int(rng.integers(16, 97))
        x = cv2.resize(
            cv2.resize(x, (s, s), interpolation=cv2.INTER_AREA), (INPUT, INPUT), interpolation=cv2.INTER_LINEAR
        )
    if rng.random() < 0.5:
        ok, enc = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 92))])
        x = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
    noise = rng.normal(0, rng.uniform(0, 8), x.shape)
    return np.clip(x + noise, 0, 255).astype(np.uint8)


def render_sample(
    rng: np.random.Generator, split: str = "train", unreadable: float = UNREADABLE
) -> tuple[np.ndarray, int, int]:
    """One training or test crop: (uint8 INPUT x INPUT x 3 RGB, minutes 0..719, readable 0/1)."""
    style = random_style(rng, split)
    hour, minute = int(rng.integers(12)), int(rng.integers(60))
    second = float(rng.uniform(0, 60)) if style.second_hand else None
    kind = "clock"
    if rng.random() < unreadable:
        kind = str(rng.choice(["blur", "nohands", "blank", "none"]))
        if kind == "nohands":
            style = ClockStyle(**{**style.__dict__, "show_hands": False})
        elif kind == "blank":
            style = ClockStyle(
                **{**style.__dict__, "show_hands": False, "markers": "none", "minute_ticks": False, "double_rim": False}
            )
    canvas = 192
    bg = _background(rng, canvas)
    if kind == "none":
        box = [float(v) for v in rng.uniform(20, 120, size=2)] + [float(rng.uniform(40, 100))] * 2
        crop = crop_box(bg, box)
    else:
        face = _warp(draw_clock_face(style, hour, minute, second, int(rng.integers(96, 140))), rng)
        x, y = (
            int(rng.integers(0, max(1, canvas - face.shape[1]))),
            int(rng.integers(0, max(1, canvas - face.shape[0]))),
        )
        scene = composite(bg, face, x, y)
        ys, xs = np.nonzero(face[..., 3] > 128)
        bw, bh = xs.max() - xs.min(), ys.max() - ys.min()
        jitter = rng.uniform(-0.08, 0.08, size=4) * max(bw, bh)
        box = [
            x + xs.min() + jitter[0],
            y + ys.min() + jitter[1],
            bw * rng.uniform(0.92, 1.12) + jitter[2],
            bh * rng.uniform(0.92, 1.12) + jitter[3],
        ]
        crop = crop_box(scene, box)
    crop = _degrade(crop, rng)
    if kind == "blur":
        crop = cv2.GaussianBlur(crop, (0, 0), float(rng.uniform(5, 9)))
    return crop, hour * 60 + minute, int(kind == "clock")


def soft_targets(minutes: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    grid = torch.arange(MINUTES, device=minutes.device)[None]
    d = (grid - minutes[:, None]).remainder(MINUTES)
    d = torch.minimum(d, MINUTES - d).float()
    w = torch.exp(-0.5 * (d / sigma) ** 2) * (d <= 2)
    return w / w.sum(-1, keepdim=True)


def heldout_set(n: int, seed: int = 12345, split: str = "heldout") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    crops, minutes, readable = zip(*(render_sample(rng, split) for _ in range(n)), strict=True)
    return np.stack(crops), np.array(minutes), np.array(readable)


@torch.inference_mode()
def evaluate(net: ReaderNet, crops: np.ndarray, minutes: np.ndarray, readable: np.ndarray, device) -> dict:
    net.eval()
    out = []
    for i in range(0, len(crops), 512):
        logits, r = net(to_tensor(crops[i : i + 512]).to(device))
        out += decode(logits, r)
    net.train()
    ok = readable == 1
    err = np.array([circular_error(o.minutes, m) for o, m in zip(out, minutes, strict=True)])[ok]
    pred_readable = np.array([o.readable >= 0.5 for o in out])
    return {
        "exact": float((err == 0).mean()),
        "within_1": float((err <= 1).mean()),
        "within_5": float((err <= 5).mean()),
        "mean_error_min": float(err.mean()),
        "readable_accuracy": float((pred_readable == ok).mean()),
    }


def _cast(state: dict, dtype: torch.dtype) -> dict:
    """A state dict with its floating-point tensors in ``dtype`` (integers, such as batch counts, kept)."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def _reaugment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The batch again, each crop turned by up to 10 degrees, scaled by 0.93-1.07 and shifted by up to 4% (on the GPU).
    Turning the whole crop turns the dial with its hands, so the time it shows does not change."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=g, device=x.device) * 2 - 1
    a, s = u[:, 0] * math.radians(10), 1 + u[:, 1] * 0.07
    theta = torch.stack(
        [
            torch.stack([a.cos() / s, -a.sin() / s, u[:, 2] * 0.04], 1),
            torch.stack([a.sin() / s, a.cos() / s, u[:, 3] * 0.04], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def train(args) -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    net = ReaderNet().to(device).to(memory_format=torch.channels_last)
    ema = torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema), use_buffers=True
    )
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.05)
    step = 0
    if args.resume:
        ck = torch.load(args.resume, map_location=device, weights_only=False)
        net.load_state_dict(_cast(ck.get("train_model", ck["model"]), torch.float32))
        ema.module.load_state_dict(_cast(ck["model"], torch.float32))
        ema.n_averaged.fill_(
            1
        )  # go on averaging (at 0 the first update would copy the trained weights over the average)
        step = ck["step"]
        opt_path = Path(args.resume).with_name("opt.pt")
        if opt_path.is_file():
            opt.load_state_dict(
                torch.load(opt_path, map_location=device, weights_only=False)
            )  # moments cast back to fp32 by Adam
        print(f"resumed from {args.resume} at step {step}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loader = training.loader(training.Rendered(render_sample, args.seed + step), args.batch, args.workers, device)
    held = heldout_set(args.eval_n)
    gen = torch.Generator(device=device).manual_seed(args.seed + step)
    t0 = time.time()
    deadline = t0 + args.minutes * 60
    first = step

    def save():
        # The averaged weights are the model ("model", what --export writes); training goes on from "train_model".
        # Stored in half precision (and the optimiser's moments in bfloat16) so that each file stays under the
        # 16 MiB that comes back from the GPU machine.
        torch.save(
            {
                "model": _cast(ema.module.state_dict(), torch.float16),
                "train_model": _cast(net.state_dict(), torch.float16),
                "step": step,
            },
            out / "last.pt",
        )
        opt_state = opt.state_dict()  # its per-parameter dicts are the optimiser's own: copy, do not cast in place
        opt_state["state"] = {
            i: {
                k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 0 else v
                for k, v in st.items()
            }
            for i, st in opt_state["state"].items()
        }
        torch.save(opt_state, out / "opt.pt")

    for crops, minutes, readable in loader:
        x0 = to_tensor(crops.numpy()).to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        minutes, readable = minutes.to(device), readable.to(device).float()
        for k in range(args.reuse):  # each rendered batch is used --reuse times, the later times turned and shifted
            x = x0 if k == 0 else _reaugment(x0, gen).contiguous(memory_format=torch.channels_last)
            # one cosine over --total-steps across commands, after a short warm-up at the start of each command
            lr = training.learning_rate(args.lr, step, first, args.total_steps, warmup=300)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits, r = net(x)
            logits, r = logits.float(), r.float()
            minute_loss = -(soft_targets(minutes) * logits.log_softmax(-1)).sum(-1)
            loss = (minute_loss * readable).sum() / readable.sum().clamp(min=1) + F.binary_cross_entropy_with_logits(
                r, readable
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update_parameters(net)
            step += 1
            if step % 200 == 0:
                rate = (step - first) / (time.time() - t0)
                print(
                    f"step {step} loss {loss.item():.3f} lr {lr:.2e} {time.time() - t0:.0f}s {rate:.1f} it/s",
                    flush=True,
                )
        stop = time.time() > deadline or step >= args.total_steps
        if step % 2000 < args.reuse or stop:
            print(f"step {step} heldout {evaluate(ema.module, *held, device)}", flush=True)
            save()
        if stop:
            break
    print(f"stopped at step {step} after {time.time() - t0:.0f} s; checkpoint {out / 'last.pt'}", flush=True)
    return 0


def export(checkpoint: str, dest: Path = WEIGHTS) -> str:
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return training.write_weights({"model": _cast(ck["model"], torch.float16), "step": ck["step"]}, dest)


def main(argv=None) -> int:
    ap = training.parser(
        "python -m clockwork.training.train_reader",
        __doc__,
        out="var/reader",
        total_steps=60_000,
        batch=256,
        lr=2e-3,
        eval_n=2000,
    )
    ap.add_argument(
        "--reuse", type=int, default=2, help="steps per rendered batch (the later ones on turned and shifted copies)"
    )
    ap.add_argument(
        "--ema", type=float, default=0.999, help="decay of the averaged weights that are evaluated and exported"
    )
    ap.add_argument(
        "--export", metavar="CHECKPOINT", help="write the small fp16 weights of CHECKPOINT into the package"
    )
    args = ap.parse_args(argv)
    if args.reuse < 1:
        ap.error(f"Invalid --reuse ({args.reuse}). Supported values are 1 or more (steps per rendered batch).")
    if not 0 <= args.ema < 1:
        ap.error(f"Invalid --ema ({args.ema}). Supported values are 0 <= ema < 1 (the averaged weights' decay).")
    training.refuse_below_one(ap, args, "total_steps")
    if args.export:
        export(args.export)
        return 0
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
