"""The catalog on SQLite and on a real PostgreSQL server."""

import datetime as dt

import pytest

from clockwork.store.catalog import Base, Catalog, Job, utcnow
from clockwork.timeline.result import Detection, FrameDetections, VideoResult
from clockwork.timeline.segments import Segment


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request, tmp_path):
    if request.param == "sqlite":
        cat = Catalog(f"sqlite:///{tmp_path}/catalog.sqlite")
    else:
        url = request.getfixturevalue("postgres_url")
        cat = Catalog(url)
        Base.metadata.drop_all(cat.engine)
        Base.metadata.create_all(cat.engine)
    yield cat
    cat.close()


def new_job(catalog, **kw) -> str:
    with catalog.session() as s:
        job = Job(video_path="/m/a.mp4", params={}, postback_url="http://x/", body_hash="h", **kw)
        s.add(job)
        s.flush()
        return job.id


def test_sqlite_uses_wal(tmp_path):
    cat = Catalog(f"sqlite:///{tmp_path}/c.sqlite")
    with cat.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_lease_claim_is_exclusive_until_expiry(catalog):
    job_id = new_job(catalog)
    assert catalog.claim(job_id, "a", 60)
    assert not catalog.claim(job_id, "b", 60)
    assert catalog.orphaned_jobs() == []
    with catalog.session() as s:
        s.get(Job, job_id).lease_expires_at = utcnow() - dt.timedelta(seconds=1)
    assert catalog.orphaned_jobs() == [job_id]
    assert catalog.claim(job_id, "b", 60)


def test_finished_job_with_pending_postback_is_still_work(catalog):
    job_id = new_job(catalog, status="succeeded")
    assert catalog.orphaned_jobs() == [job_id]
    with catalog.session() as s:
        s.get(Job, job_id).postback_delivered = True
    assert catalog.orphaned_jobs() == []
    assert catalog.counts_by_status()["succeeded"] == 1


def a_result(segments) -> VideoResult:
    frames = [FrameDetections(i, i / 25, [Detection(1, 2, 3, 4, "clock", 0.9)]) for i in range(2, 13)]
    return VideoResult("a.mp4", 25.0, 10, 10, 1.0, 25, 25, {"name": "m"}, ["clock"], 0.5, None, frames, segments)


def test_results_replace_by_params(catalog):
    segment = Segment("clock", 0.1, 0.5, 2, 12, 0.9, 10)
    params = {"labels": ["clock"], "min_score": 0.5, "sample_fps": None}
    with catalog.session() as s:
        first = catalog.save_result(s, "/m/a.mp4", a_result([segment]), params).id
    with catalog.session() as s:
        again = catalog.save_result(s, "/m/a.mp4", a_result([]).to_json(), params)
        assert again.id == first and again.segments == []
        # the stored document reads back as the same result: one type from model to catalog
        assert again.video_result() == a_result([])


def test_a_document_that_is_not_a_result_is_refused(catalog):
    with catalog.session() as s, pytest.raises(KeyError, match="video_file"):
        catalog.save_result(s, "/m/a.mp4", {"width": 10, "height": 10}, {"labels": None})


def test_a_catalog_from_an_earlier_version_gains_the_new_columns(tmp_path):
    """Columns added since (postback history and schedule, readings) are added in place; rows are kept."""
    import sqlite3

    from clockwork.store.catalog import Catalog, Job

    url = f"sqlite:///{tmp_path}/old.sqlite"
    first = Catalog(url)
    with first.session() as s:
        s.add(Job(id="old1", status="succeeded", video_path="/m/a.mp4", params={}, body_hash="h"))
    first.close()
    with sqlite3.connect(tmp_path / "old.sqlite") as db:
        for table, column in (
            ("jobs", "postback_history"),
            ("jobs", "deliveries"),
            ("jobs", "postback_next_at"),
            ("snippets", "clock_minutes"),
            ("segments", "clock_confidence"),
        ):
            if column == "postback_next_at":
                db.execute("DROP INDEX ix_jobs_postback_next_at")
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    catalog = Catalog(url)
    with catalog.session() as s:
        old = s.get(Job, "old1")
        assert old.status == "succeeded" and old.postback_history is None and old.deliveries is None
        s.add(Job(video_path="/m/b.mp4", params={}, body_hash="h2", dedupe_key="body:h2"))
    job, created = catalog.admit(
        Job(video_path="/m/b.mp4", params={}, body_hash="h2", dedupe_key="body:h2"), max_active=10, window_s=60
    )
    assert not created  # the dedupe key works in the migrated table
    catalog.close()
