"""Snippet choice, concat-list escaping, and a real ffmpeg concat of awkward file names."""

import subprocess

import pytest

from clockwork.remix import Pick, concat, concat_line, select, verify, write_videolist
from clockwork.remix.clips import cut, hash_distance, perceptual_hash
from clockwork.video.ffmpeg import probe_json


def pick(name, source, start, score, phash=None, length=2.0):
    return Pick(name, f"/s/{name}", source, start, start + length, score, phash)


def test_per_source_limit_never_loops_with_few_sources():
    picks = [pick(f"a{i}", "A", i * 3, 0.5 + i / 100) for i in range(5)] + [pick("b0", "B", 0, 0.9)]
    sel = select(picks, per_source=1, order="score")
    assert [p.name for p in sel.chosen] == ["b0", "a4"]
    assert len(sel.dropped_per_source) == 4
    assert [p.name for p in select(picks, per_source=2, order="score").chosen] == ["b0", "a4", "a3"]


def test_near_duplicates_are_dropped():
    h1, h2 = "0" * 64, "0" * 63 + "f"  # 4 bits apart
    sel = select([pick("orig", "A", 1, 0.9, h1), pick("copy", "B", 1, 0.8, h2), pick("other", "C", 1, 0.7, "f" * 64)])
    assert sorted(p.name for p in sel.chosen) == ["orig", "other"]
    assert [(d.name, k.name) for d, k in sel.dropped_duplicates] == [("copy", "orig")]


def test_seeded_order_is_reproducible_and_max_duration_applies():
    picks = [pick(f"s{i}", f"S{i}", 0, 0.5) for i in range(8)]
    a = [p.name for p in select(picks, seed=7).chosen]
    assert a == [p.name for p in select(list(reversed(picks)), seed=7).chosen]
    assert a != [p.name for p in select(picks, seed=8).chosen]
    assert [p.name for p in select(picks, order="source-time").chosen] == [f"s{i}" for i in range(8)]
    assert len(select(picks, max_duration_s=5).chosen) == 2
    with pytest.raises(ValueError, match=r"Invalid order \('best'\)"):
        select(picks, order="best")


def test_concat_line_quotes_and_escapes(tmp_path):
    assert concat_line(tmp_path / "it's here.mp4") == "file '" + str(tmp_path) + "/it'\\''s here.mp4'"
    assert concat_line(tmp_path / "-dash.mp4").startswith(f"file '{tmp_path}/-dash.mp4")


def test_concat_of_awkward_names_with_stream_copy(samples_dir, tmp_path):
    """Snippets from sources of different formats, under names with spaces, quotes and a leading dash."""
    a = cut(samples_dir / "clock_portrait_2997.mp4", 1.5, 3.0, tmp_path / "it's a clip.mp4", has_audio=True)
    b = cut(samples_dir / "clock_moving_360p25.mp4", 0.5, 2.0, tmp_path / "-dash first.mp4", has_audio=False)
    for clip in (a, b):
        streams = probe_json(clip)["streams"]
        v = next(s for s in streams if s["codec_type"] == "video")
        au = next(s for s in streams if s["codec_type"] == "audio")
        assert (v["codec_name"], v["width"], v["height"], v["r_frame_rate"], v["pix_fmt"]) == (
            "h264",
            1280,
            720,
            "30/1",
            "yuv420p",
        )
        assert (au["codec_name"], au["sample_rate"], au["channels"]) == ("aac", "48000", 2)
    videolist = write_videolist([a, b], tmp_path / "videolist.txt")
    out = concat(videolist, tmp_path / "out.mp4")
    checked = verify(out, 3.0)
    assert checked["streams"].count("video") == 1 and abs(checked["duration_s"] - 3.0) < 0.3
    assert not list(tmp_path.glob(".*part*"))


def test_cut_is_frame_accurate_and_hash_finds_reupload(samples_dir, tmp_path):
    a = cut(samples_dir / "clock_static_720p30.mp4", 1.0, 4.0, tmp_path / "a.mp4", has_audio=True)
    b = cut(samples_dir / "clock_static_720p30_reupload.mp4", 1.0, 4.0, tmp_path / "b.mp4", has_audio=True)
    c = cut(samples_dir / "clock_60fps_480p.mp4", 0.5, 2.5, tmp_path / "c.mp4", has_audio=False)
    frames = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(a),
        ],
        capture_output=True,
        text=True,
    ).stdout
    assert int(frames) == 90  # 3.000 s at 30 fps, no frame more or less
    assert (
        hash_distance(perceptual_hash(a), perceptual_hash(b))
        <= 40
        < hash_distance(perceptual_hash(a), perceptual_hash(c))
    )


def test_verify_refuses_a_wrong_duration(samples_dir, tmp_path):
    a = cut(samples_dir / "clock_moving_360p25.mp4", 0.5, 2.0, tmp_path / "a.mp4", has_audio=False)
    with pytest.raises(Exception, match="differs from the snippets' sum"):
        verify(a, 10.0)


def _pick(name, minutes, score=0.9, source=None, length=30.0):
    return Pick(name, f"/s/{name}", source or f"/v/{name}", 0.0, length, score, None, minutes)


def test_time_of_day_order_runs_the_clocks_forward_across_twelve():
    from clockwork.remix import select

    picks = [_pick("a", 11 * 60 + 50), _pick("b", 10), _pick("c", 5 * 60), _pick("d", None), _pick("e", 11 * 60 + 58)]
    chosen = select(picks, order="time-of-day", start_minutes=11 * 60 + 45, span_minutes=60).chosen
    assert [p.name for p in chosen] == [
        "a",
        "e",
        "b",
    ]  # 11:50, 11:58, then 12:10 after the wrap; 5:00 and unread left out
    with pytest.raises(ValueError, match="span"):
        select(picks, order="time-of-day", span_minutes=0)


def test_coverage_and_the_remix_document_name_the_gaps(tmp_path):
    from clockwork.remix import Selection, coverage, remix_document

    picks = [_pick("a", 600, length=90.0), _pick("b", 605)]  # 10:00 for 1.5 min (two minutes), 10:05 for 30 s
    cov = coverage(picks, 600, 10)
    assert cov["covered_minutes"] == 3 and cov["gaps"] == [
        {"from": "10:02", "minutes": 3},
        {"from": "10:06", "minutes": 4},
    ]
    doc = remix_document(
        tmp_path / "r.mp4",
        picks=picks,
        sources={},
        selection=Selection(picks, [], [], []),
        label="clock",
        order="time-of-day",
        span=(600, 10),
    )
    assert [s["clock_time"] for s in doc["snippets"]] == ["10:00", "10:05"] and doc["coverage"]["share"] == 0.3
    from clockwork.remix.pages import remix_view, render

    page = render("remix.html", remix=remix_view(doc, video_url="r.mp4"), ui=None, docs_url=None, nav="remix")
    assert "3 of the 10 minutes from 10:00" in page and "10:02 (3 min)" in page


def test_a_read_segment_carries_the_time_its_clock_shows(samples_dir, detector):
    from clockwork.timeline.pipeline import detect_video
    from clockwork.timeread.clocktime import circular_error

    result = detect_video(
        samples_dir / "clock_static_720p30.mp4", detector=detector, sample_fps=2, views=["full"], read_time=True
    )
    [seg] = result.segments
    shows = result.clock_time_between(seg.start_s, seg.end_s)
    assert shows is not None and circular_error(shows.minutes, 10 * 60 + 10) <= 1  # the sample clock shows 10:10


def test_place_lays_snippets_on_the_remix_clock_with_cards_and_trims():
    from clockwork.remix import place, placement_coverage

    a, b = _pick("a", 600, score=0.9, length=30.0), _pick("b", 600, score=0.8, length=50.0)
    c, d = _pick("c", 602, length=150.0), _pick("d", 600, score=0.1, length=20.0)
    placed = place([c, d, b, a], start=600, span=5)  # 10:00 for five minutes
    got = [(st.offset_s, st.duration_s, st.pick.name if st.pick else "card", st.shows) for st in placed.stretches]
    assert got == [
        (0.0, 30.0, "a", 600),
        (30.0, 30.0, "b", 600),
        (60.0, 60.0, "card", 601),
        (120.0, 60.0, "c", 602),
        (180.0, 120.0, "card", 603),
    ]
    assert placed.duration_s == 300.0 and [p.name for p in placed.full_minute] == ["d"]  # 10:00 was full
    assert (
        placed.stretches[1].trimmed and placed.stretches[3].trimmed and not placed.stretches[0].trimmed
    )  # each ends with its minute
    cov = placement_coverage(placed)
    assert cov["covered_minutes"] == 2 and cov["start"] == "10:00"
    assert cov["gaps"] == [{"from": "10:01", "minutes": 1}, {"from": "10:03", "minutes": 2}]


def test_place_keeps_every_clock_within_a_minute_of_the_running_time():
    """Whatever the snippets, a placed clip plays inside the minute of the remix's clock that its reading names
    (a still dial at worst): the remix's running time is the reading for every second it plays."""
    import random

    from clockwork.remix import place
    from clockwork.timeread.clocktime import circular_error

    rng = random.Random(5)
    for _ in range(50):
        picks = [
            _pick(f"p{i}", rng.randrange(700, 740) % 720, score=rng.random(), length=rng.uniform(0.5, 200.0))
            for i in range(rng.randrange(1, 30))
        ]
        placed = place(picks, start=700, span=45)
        assert abs(placed.duration_s - 45 * 60) < 0.01
        for st in placed.stretches:
            if st.pick is None:
                continue
            for t in (st.offset_s, st.offset_s + st.duration_s - 1e-3):
                running = (700 + int(t // 60)) % 720
                assert circular_error(running, st.pick.clock_minutes) == 0, (st, t)


def test_place_am_pm_and_the_skip_rule():
    from clockwork.remix import default_span, place
    from clockwork.timeread.clocktime import parse_day_time

    p = _pick("a", 10 * 60 + 5, source="/v/evening.mp4")  # a 12-hour reading of 10:05
    assert [st.pick.name for st in place([p], start=parse_day_time("21:55"), span=20).stretches if st.pick] == ["a"]
    assert not any(
        st.pick
        for st in place([p], start=parse_day_time("21:55"), span=20, meridiem={"/v/evening.mp4": "am"}).stretches
    )
    skip = place([_pick("x", 600, length=10.0), _pick("y", 630, length=5.0)], start=600, span=60, gaps="skip")
    assert [(st.offset_s, st.duration_s) for st in skip.stretches] == [(0.0, 10.0), (10.0, 5.0)]  # no cards
    assert default_span([_pick("a", 718), _pick("b", 3)]) == (718, 7)  # 11:58 through 12:03, across twelve
    assert default_span([_pick("a", 718)], {"/v/a": "pm"}) == (718 + 720, 2)
    with pytest.raises(ValueError, match="24-hour"):
        parse_day_time("25:99")
    with pytest.raises(ValueError, match="gap rule"):
        place([p], start=0, span=10, gaps="black")


def test_a_card_shows_the_running_time(tmp_path):
    from clockwork.remix.clips import Profile, card
    from clockwork.video.ffmpeg import probe_json

    out = card(tmp_path / "card.mp4", 2.0, 10 * 60 + 10, profile=Profile(320, 180, 30))
    info = probe_json(out)
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "video"]
    assert abs(float(info["format"]["duration"]) - 2.0) < 0.1


def test_time_span_fills_in_what_the_user_left_out():
    from clockwork.remix import time_span

    picks = [_pick("a", 10 * 60 + 10), _pick("b", 10 * 60 + 15)]  # readings 10:10 and 10:15
    assert time_span(picks) == (610, 7)  # 10:10 through 10:16
    assert time_span(picks, span=30) == (610, 30)
    assert time_span(picks, start="10:00") == (600, 17)  # a start alone still reaches the last reading
    assert time_span(picks, start="22:00", span=5) == (1320, 5)
    assert time_span([_pick("c", None)], start="22:00", span=5) == (1320, 5)  # both given: no reading needed
    with pytest.raises(ValueError, match="no snippet has a trusted reading"):
        time_span([_pick("c", None)], start="10:00")
