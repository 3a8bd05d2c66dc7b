import pytest

from clockwork.video.media import PathNotAllowedError, list_videos, resolve_in_roots


@pytest.fixture
def roots(tmp_path):
    a, b, outside = tmp_path / "a", tmp_path / "b", tmp_path / "outside"
    for d in (a, b, outside, a / "sub"):
        d.mkdir()
    (a / "sub" / "one.mp4").write_bytes(b"x")
    (b / "two.mp4").write_bytes(b"x")
    (outside / "secret.mp4").write_bytes(b"x")
    (a / "escape.mp4").symlink_to(outside / "secret.mp4")
    (a / "inner.mp4").symlink_to(b / "two.mp4")
    return a, b, outside


def test_names_resolve_inside_any_root(roots):
    a, b, _ = roots
    assert resolve_in_roots("sub/one.mp4", [a, b]) == a / "sub" / "one.mp4"
    assert resolve_in_roots("two.mp4", [a, b]) == b / "two.mp4"
    assert resolve_in_roots(str(b / "two.mp4"), [a, b]) == b / "two.mp4"
    assert resolve_in_roots("inner.mp4", [a, b]) == b / "two.mp4"  # a link that stays inside the roots
    assert resolve_in_roots("missing.mp4", [a, b]) == a / "missing.mp4"  # absent: the caller answers 404


@pytest.mark.parametrize(
    "name", ["../outside/secret.mp4", "sub/../../outside/secret.mp4", "escape.mp4", "/etc/passwd", "", "a\x00b"]
)
def test_escapes_are_refused(roots, name):
    a, b, _ = roots
    with pytest.raises(PathNotAllowedError):
        resolve_in_roots(name, [a, b])


def test_list_videos(roots):
    a, _, _ = roots
    assert [p.name for p in list_videos(a)] == ["escape.mp4", "inner.mp4", "one.mp4"]
