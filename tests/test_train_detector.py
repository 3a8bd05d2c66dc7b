"""Fine-tuning the detector's heads: rendered scenes, YOLOv3's loss, a real CPU run, the head file laid over COCO."""

import json
import math

import numpy as np
import pytest
import torch

from clockwork.detect.boxes import LETTERBOX_FILL
from clockwork.detect.darknet import YoloHead
from clockwork.detect.detector import Detector
from clockwork.errors import ModelError
from clockwork.training import train_detector
from clockwork.training.train_detector import CLOCK, INPUT, TRAIN_FROM, base_model, render_scene, yolo_loss


def test_scenes_box_the_clocks_inside_the_frame_not_the_grey_bars():
    rng = np.random.default_rng(5)
    n_boxes = 0
    for _ in range(30):
        img, boxes = render_scene(rng)
        assert img.shape == (INPUT, INPUT, 3) and img.dtype == np.uint8 and boxes.shape[1] == 4
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= INPUT and 0 <= y0 < y1 <= INPUT
            inside = img[int(y0) : int(y1), int(x0) : int(x1)]
            assert (np.abs(inside.astype(int) - LETTERBOX_FILL) > 3).any()  # a box holds a drawn frame, not the bars
        n_boxes += len(boxes)
    assert 20 <= n_boxes <= 70  # 0-3 clocks a scene, some hidden or cut to slivers


def _perfect_logits(heads, boxes):
    """Logits that encode ``boxes`` exactly where the loss assigns them, and nothing elsewhere."""
    raws = [
        torch.full((1, h.anchors.shape[0], INPUT // s, INPUT // s, 85), -12.0)
        for h, s in zip(heads, (32, 16), strict=True)
    ]
    anchors = torch.cat([h.anchors for h in heads])
    for box in boxes:
        wh = box[2:] - box[:2]
        inter = torch.min(wh[None], anchors).prod(-1)
        k = int((inter / (wh.prod() + anchors.prod(-1) - inter)).argmax())
        hi, a = divmod(k, 3)
        stride = (32, 16)[hi]
        c = (box[:2] + box[2:]) / 2 / stride
        j, i = int(c[0]), int(c[1])
        frac = (c - torch.tensor([j, i])).clamp(1e-4, 1 - 1e-4)
        cell = raws[hi][0, a, i, j]
        cell[:2] = torch.log(frac / (1 - frac))
        cell[2:4] = torch.log(wh / heads[hi].anchors[a])
        cell[4] = 12.0
        cell[5 + CLOCK] = 12.0
    return raws


def test_the_loss_is_near_zero_for_logits_that_encode_the_boxes_and_high_otherwise():
    heads = [layer for layer in base_model("cpu").layers if isinstance(layer, YoloHead)]
    boxes = torch.tensor([[100.0, 120.0, 180.0, 210.0], [300.0, 40.0, 320.0, 62.0]])
    perfect = _perfect_logits(heads, boxes)
    loss, parts = yolo_loss(perfect, heads, [boxes])
    # the offsets' BCE has an entropy floor: compare against the same loss with the targets moved
    moved, _ = yolo_loss(perfect, heads, [boxes + 37.0])
    assert parts["obj"] < 1e-3 and parts["cls"] < 1e-3 and parts["wh"] < 1e-6
    assert moved > loss + 10
    empty, parts_empty = yolo_loss(perfect, heads, [torch.zeros((0, 4))])
    assert parts_empty["noobj"] > 20 and parts_empty["xy"] == 0  # two confident boxes where there is no clock


def test_a_second_confident_box_on_a_clock_is_not_punished_as_background():
    heads = [layer for layer in base_model("cpu").layers if isinstance(layer, YoloHead)]
    box = torch.tensor([[100.0, 120.0, 180.0, 210.0]])  # 80 x 90, centre (140, 165): the first head's anchor 81 x 82
    raws = _perfect_logits(heads, box)
    _, alone = yolo_loss(raws, heads, [box])
    # the second head's anchor 37 x 58 at the centre's cell, sized to the same box: IoU about 1 with the truth
    cell = raws[1][0, 2, 165 // 16, 140 // 16]
    frac = torch.tensor([140 / 16 - 140 // 16, 165 / 16 - 165 // 16])
    cell[:2] = torch.log(frac / (1 - frac))
    cell[2:4] = torch.log(torch.tensor([80.0, 90.0]) / heads[1].anchors[2])
    cell[4] = 12.0
    _, both = yolo_loss(raws, heads, [box])
    assert both["noobj"] - alone["noobj"] < 1e-3  # ignored (IoU > 0.5), not a 12-nat penalty
    cell[:4] = torch.tensor([0.0, 0.0, -3.0, -3.0])  # the same cell boxing a speck beside the clock is background
    _, off = yolo_loss(raws, heads, [box])
    assert off["noobj"] - alone["noobj"] > 10


def test_a_few_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    model = base_model("cpu")
    heads = [layer for layer in model.layers if isinstance(layer, YoloHead)]
    rng = np.random.default_rng(11)
    imgs, boxes = zip(*(render_scene(rng) for _ in range(2)), strict=True)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    targets = [torch.from_numpy(b) for b in boxes]
    params = [p for p in model.parameters() if p.requires_grad]
    assert 2_000_000 < sum(p.numel() for p in params) < 3_000_000  # the heads only; COCO's backbone is frozen
    frozen = model.layers[0].conv.weight.clone()
    opt = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for _ in range(8):
        loss, _ = yolo_loss(model(x, raw=True), heads, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert torch.equal(model.layers[0].conv.weight, frozen)


def test_trains_resumes_exports_and_the_detector_loads_the_head(tmp_path, capsys):
    args = ["--minutes", "5", "--workers", "0", "--batch", "2", "--eval-n", "4", "--device", "cpu", "--log-every", "1"]
    assert train_detector.main(["--out", str(tmp_path / "a"), *args, "--total-steps", "2"]) == 0
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=False)["step"] == 2
    assert (
        train_detector.main(
            ["--out", str(tmp_path / "b"), "--resume", str(tmp_path / "a" / "last.pt"), *args, "--total-steps", "3"]
        )
        == 0
    )
    assert "resumed from" in capsys.readouterr().out
    head = tmp_path / "head.pt"
    digest = train_detector.export(str(tmp_path / "b" / "last.pt"), head)
    assert head.stat().st_size < 6_000_000  # fp16, the layers from TRAIN_FROM on
    coco, tuned = Detector(device="cpu", head="none"), Detector(device="cpu", head=head)
    assert tuned.model_info["head_sha256"] == digest and "head_sha256" not in coco.model_info
    assert torch.equal(coco.model.layers[0].conv.weight, tuned.model.layers[0].conv.weight)
    assert not torch.equal(
        coco.model.layers[TRAIN_FROM + 1].conv.weight, tuned.model.layers[TRAIN_FROM + 1].conv.weight
    )
    frame = np.full((360, 640, 3), 90, np.uint8)
    assert tuned.detect([frame], min_score=0.01, labels=["clock"]) is not None


def test_a_head_file_that_does_not_fit_is_refused_by_name(tmp_path):
    model = base_model("cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read detector head"):
        model.load_head(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": {}}, other)
    with pytest.raises(ModelError, match="not a detector head file"):
        model.load_head(other)
    wrong = tmp_path / "wrong.pt"
    torch.save({"train_from": TRAIN_FROM, "layers": {"13.conv.weight": torch.zeros(3, 3, 1, 1)}}, wrong)
    with pytest.raises(ModelError, match="do not fit this model"):
        model.load_head(wrong)


@pytest.mark.parametrize("flag", ["--batch", "--total-steps", "--eval-every"])
def test_bad_numbers_are_refused_with_one_line(flag, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        train_detector.main(["--out", str(tmp_path), flag, "0"])
    assert exc.value.code == 2
    assert f"Invalid {flag} (0)" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_boxes_scale_with_the_frame_and_the_sizes_cover_the_evaluation_scales():
    rng = np.random.default_rng(9)
    heights = []
    for _ in range(200):
        _, boxes = render_scene(rng)
        heights += [float(b[3] - b[1]) for b in boxes]
    heights = np.array(heights)
    # small wall clocks (about 20 px at the network input) to extreme close-ups (the frame's height)
    assert (heights < 25).mean() > 0.05 and (heights > 200).mean() > 0.05
    assert math.isfinite(heights.mean())


def _coco_heads_as_a_head_file(path):
    """A valid head file whose layers are COCO's own (the plumbing is what is tested, not a training run)."""
    from clockwork.training import common as training

    training.write_weights(
        {
            "layers": train_detector.head_state(base_model("cpu")),
            "train_from": TRAIN_FROM,
            "step": 0,
            "labels": ["clock"],
        },
        path,
    )
    return path


def test_a_head_finds_only_its_labels_and_says_so_for_others(tmp_path):
    tuned = Detector(device="cpu", head=_coco_heads_as_a_head_file(tmp_path / "clock_head.pt"))
    assert tuned.label_ids(None) == [CLOCK] and tuned.label_ids(["clock"]) == [CLOCK]
    with pytest.raises(ValueError, match=r"label 'person': this detector's fine-tuned head .* finds only clock"):
        tuned.label_ids(["clock", "person"])
    assert Detector(device="cpu", head="none").label_ids(["person"]) == [0]  # COCO's model keeps every label


def test_cli_detect_takes_a_head_and_refuses_a_bad_one_by_name(samples_dir, tmp_path, capsys):
    from clockwork.cli import main

    video = str(samples_dir / "clock_moving_360p25.mp4")
    head = _coco_heads_as_a_head_file(tmp_path / "clock_head.pt")
    capsys.readouterr()  # write_weights' line
    assert (
        main(
            [
                "detect",
                video,
                "--sample-fps",
                "2",
                "--device",
                "cpu",
                "--views",
                "full",
                "--head",
                str(head),
                "--json",
                "-",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"]["head_sha256"] and doc["segments"]
    (tmp_path / "junk.pt").write_bytes(b"not a head")
    assert main(["detect", video, "--device", "cpu", "--head", str(tmp_path / "junk.pt")]) == 2
    assert "cannot read detector head" in capsys.readouterr().err
    assert main(["detect", video, "--device", "cpu", "--head", str(head), "--labels", "person"]) == 2
    assert "finds only clock" in capsys.readouterr().err


def test_the_embedded_clock_head_is_pinned_and_named_clock(tmp_path, monkeypatch):
    from clockwork.detect import detector as detector_module

    tuned = Detector(device="cpu", head="clock")
    assert tuned.model_info["head_sha256"] == detector_module.CLOCK_HEAD_SHA256 and tuned.label_ids(None) == [CLOCK]
    assert Detector(device="cpu", head="none").head_labels is None
    altered = tmp_path / "clock_head.pt"
    altered.write_bytes(detector_module.CLOCK_HEAD.read_bytes() + b"\\0")
    monkeypatch.setattr(detector_module, "CLOCK_HEAD", altered)
    with pytest.raises(ModelError, match="is not the pinned"):
        Detector(device="cpu", head="clock")


def test_the_api_refuses_a_label_the_head_does_not_find(make_client, tmp_path):
    from serve_app.client import LocalDetectorClient

    tuned = Detector(device="cpu", head=_coco_heads_as_a_head_file(tmp_path / "clock_head.pt"))
    client = make_client(detector_client=LocalDetectorClient(tuned))
    r = client.post("/video-inference", json={"filename": "clock_moving_360p25.mp4", "labels": ["person"]})
    assert r.status_code == 400 and "Unknown label 'person'" in r.text and "clock" in r.text, r.text


def test_bench_recall_refuses_head_thresholds_without_a_head(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "bench.recall", "--data", str(tmp_path / "evalset"), "--head-min-scores", "0.7"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--head-min-scores needs --head" in proc.stderr, proc.stderr
    assert not (tmp_path / "evalset").exists()  # refused before anything is rendered
