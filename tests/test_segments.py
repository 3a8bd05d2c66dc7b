from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clockwork.timeline.segments import Hit, SegmentRules, build_segments


def hits_at(times, fps=10.0, label="clock", score=0.9):
    return [Hit(int(round(t * fps)), t, label, score) for t in times]


def test_gap_tolerance_joins_and_splits():
    hits = hits_at([1.0, 1.1, 1.2, 1.6, 3.0, 3.1])
    segs = build_segments(hits, fps=10, duration_s=10, rules=SegmentRules(gap_s=0.5, min_length_s=0))
    assert [(s.start_s, round(s.end_s, 3), s.frames) for s in segs] == [(1.0, 1.7, 4), (3.0, 3.2, 2)]
    assert segs[0].start_frame == 10 and segs[0].end_frame == 16


def test_counts_by_timestamp_not_list_position():
    """Sampled hits (every 5th frame) are still one segment; times are true, not whole seconds."""
    hits = [Hit(n, n / 25.0, "clock", 0.8) for n in range(25, 100, 5)]
    segs = build_segments(hits, fps=25 / 5, duration_s=10, rules=SegmentRules(gap_s=0.1, min_length_s=0))
    assert len(segs) == 1
    assert segs[0].start_s == 1.0 and segs[0].start_frame == 25 and segs[0].end_frame == 95
    assert segs[0].end_s == pytest.approx(95 / 25 + 0.2)


def test_min_length_drops_and_padding_clips_to_video():
    hits = hits_at([0.0, 0.1, 5.0]) + hits_at([9.5, 9.6, 9.7, 9.8, 9.9])
    segs = build_segments(hits, fps=10, duration_s=10, rules=SegmentRules(gap_s=0, min_length_s=0.2, padding_s=1.0))
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, pytest.approx(1.2)), (pytest.approx(8.5), 10.0)]


def test_max_length_splits_long_segments():
    hits = hits_at([i / 10 for i in range(0, 100)])
    segs = build_segments(hits, fps=10, duration_s=10, rules=SegmentRules(max_length_s=4))
    assert [(s.start_s, s.end_s) for s in segs] == [(0, 4), (4, 8), (8, 10)]
    assert sum(s.frames for s in segs) == 100


def test_labels_are_separate():
    hits = hits_at([1.0, 1.1], label="clock") + hits_at([1.0, 1.1], label="person")
    segs = build_segments(hits, fps=10, duration_s=5, rules=SegmentRules(min_length_s=0))
    assert sorted(s.label for s in segs) == ["clock", "person"]


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match=r"Invalid gap_s \(-1\)"):
        SegmentRules(gap_s=-1)


@given(
    times=st.lists(st.floats(0, 60, allow_nan=False), max_size=80),
    gap=st.floats(0, 3),
    pad=st.floats(0, 2),
    max_len=st.one_of(st.none(), st.floats(0.5, 10)),
)
def test_segment_invariants(times, gap, pad, max_len):
    hits = [Hit(int(t * 30), t, "clock", 0.5) for t in sorted(set(times))]
    rules = SegmentRules(gap_s=gap, min_length_s=0, padding_s=pad, max_length_s=max_len)
    segs = build_segments(hits, fps=30, duration_s=61, rules=rules)
    assert sum(s.frames for s in segs) == len(hits)  # every hit lands in exactly one segment
    for s in segs:
        assert 0 <= s.start_s < s.end_s <= 61
        if max_len is not None:
            assert s.end_s - s.start_s <= max_len + 2 * pad + 1e-6
    assert all(a.start_s <= b.start_s for a, b in pairwise(segs))


def test_hysteresis_a_dip_below_the_threshold_neither_splits_nor_shortens():
    strong = [Hit(i, i / 10, "clock", 0.9) for i in range(0, 10)] + [
        Hit(i, i / 10, "clock", 0.9) for i in range(20, 25)
    ]
    weak = [Hit(i, i / 10, "clock", 0.35, strong=False) for i in range(10, 20)] + [
        Hit(i, i / 10, "clock", 0.35, strong=False) for i in range(25, 30)
    ]
    segs = build_segments(strong + weak, fps=10, duration_s=10, rules=SegmentRules(gap_s=0, min_length_s=0))
    assert [(s.start_s, s.end_s, s.frames) for s in segs] == [(0.0, 3.0, 30)]
    # without the weak hits the same detections split in two and end early
    segs = build_segments(strong, fps=10, duration_s=10, rules=SegmentRules(gap_s=0, min_length_s=0))
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, 1.0), (2.0, 2.5)]


def test_weak_hits_alone_make_no_segment_and_do_not_start_one():
    weak = [Hit(i, i / 10, "clock", 0.35, strong=False) for i in range(0, 10)]
    assert build_segments(weak, fps=10, duration_s=10, rules=SegmentRules(gap_s=0, min_length_s=0)) == []
    strong = [Hit(i, i / 10, "clock", 0.9) for i in range(10, 15)]
    segs = build_segments(weak + strong, fps=10, duration_s=10, rules=SegmentRules(gap_s=0, min_length_s=0))
    assert [(s.start_s, s.start_frame) for s in segs] == [(1.0, 10)]  # starts at the threshold, not before
