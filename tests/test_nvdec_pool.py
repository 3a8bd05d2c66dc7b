"""clockwork.video.nvdec.DecoderPool's bookkeeping, on the CPU (tests/test_gpu.py reads frames through kept
decoders)."""

from __future__ import annotations

from clockwork.video.nvdec import DecoderPool


class Ended:
    """Stands in for a ThreadedDecoder: the pool only keeps it or calls ``end``."""

    def __init__(self):
        self.ended = False

    def end(self):
        self.ended = True


def test_the_pool_keeps_no_more_decoders_than_were_open_at_once():
    pool, key = DecoderPool(), ("gpu0", 32)
    assert pool.take(key) is None and pool.take(key) is None  # two chunks at once: nothing kept yet
    first, second, third = Ended(), Ended(), Ended()
    pool.give(key, first, keep=True)
    pool.give(key, second, keep=True)
    assert pool.open == 0 and pool.peak == 2 and not first.ended and not second.ended
    assert pool.take(key) is second and pool.take(key) is first and pool.reused == 2
    assert pool.take(key) is None  # a third at once: a new decoder, and the peak grows
    pool.give(key, first, keep=True)
    pool.give(key, second, keep=True)
    pool.give(key, third, keep=True)
    assert not third.ended
    assert pool.take(("gpu1", 32)) is None  # another key gets none of them
    extra = Ended()
    pool.give(("gpu1", 32), extra, keep=True)  # the peak (3) is kept already: this one is ended
    assert extra.ended
    pool.clear()
    assert first.ended and second.ended and third.ended and pool.take(key) is None


def test_a_decoder_that_raised_or_never_opened_is_not_kept():
    pool, key = DecoderPool(), ("gpu0", 32)
    pool.take(key)
    broken = Ended()
    pool.give(key, broken, keep=False)
    assert broken.ended and pool.take(key) is None and pool.open == 1
    pool.give(key, None, keep=False)  # its construction failed
    assert pool.open == 0
