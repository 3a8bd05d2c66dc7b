"""Training the clock reader: a few real steps on the CPU, resuming, exporting; styles kept apart from the test sets."""

import numpy as np
import pytest
import torch

from clockwork.timeread.reader import INPUT, ReaderNet
from clockwork.training import train_reader
from clockwork.training.clockface import HANDS_TRAIN, PALETTES_EVAL, random_style


def test_trains_resumes_and_exports_small_weights(tmp_path):
    args = ["--minutes", "5", "--workers", "0", "--batch", "8", "--eval-n", "16", "--total-steps", "4"]
    assert train_reader.main(["--out", str(tmp_path / "a"), *args]) == 0
    first = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    assert first["step"] == 4
    assert all(v.dtype == torch.float16 for v in first["model"].values() if v.is_floating_point())
    # a resumed command goes on counting steps from the checkpoint and keeps averaging
    resume = ["--out", str(tmp_path / "b"), "--resume", str(tmp_path / "a" / "last.pt")]
    assert train_reader.main([*resume, *args[:-1], "6"]) == 0
    second = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert second["step"] == 6
    assert any(not torch.equal(second["model"][k], second["train_model"][k]) for k in second["model"] if "weight" in k)
    digest = train_reader.export(str(tmp_path / "b" / "last.pt"), tmp_path / "w.pt")
    assert len(digest) == 64
    net = ReaderNet()
    net.load_state_dict({k: v.float() for k, v in torch.load(tmp_path / "w.pt", weights_only=True)["model"].items()})
    logits, readable = net.eval()(torch.zeros(2, 3, INPUT, INPUT))
    assert logits.shape == (2, 720) and readable.shape == (2,)


def test_training_styles_never_use_the_held_out_hands_dials_or_palettes():
    rng = np.random.default_rng(3)
    styles = [random_style(rng, "train") for _ in range(3000)]
    assert {s.hands for s in styles} == set(HANDS_TRAIN)
    assert "arrow" not in HANDS_TRAIN and not any(s.shape == "octagon" for s in styles)
    for s in styles:
        for face, ink in PALETTES_EVAL:
            assert max(abs(a - b) for a, b in zip(s.face + s.ink, face + ink, strict=True)) > 30


def test_turned_copies_keep_the_batch_shape_and_change_the_pixels():
    x = torch.rand(4, 3, INPUT, INPUT)
    y = train_reader._reaugment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(x, y)


@pytest.mark.parametrize("flag,value", [("--reuse", "0"), ("--ema", "1.5"), ("--total-steps", "0")])
def test_bad_training_settings_are_refused_with_one_line_before_anything_is_written(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        train_reader.main(["--out", str(tmp_path / "ck"), flag, value])
    assert exit_info.value.code == 2
    assert f"Invalid {flag} ({value})" in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()
