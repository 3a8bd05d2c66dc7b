"""The catalog: videos, detection results, segments, jobs and snippets, through SQLAlchemy.

SQLite in a file by default (WAL mode and a busy timeout, so several processes share it safely);
PostgreSQL by URL on clusters (``postgresql+psycopg://user:pass@host/db``). The Serve app and the
Ray jobs share it: the API writes results, the splitter reads them and writes snippets.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from clockwork import settings
from clockwork.timeline.result import VideoResult


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def final(self) -> bool:
        return not self.active


ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Video(Base):
    __tablename__ = "videos"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[float | None] = mapped_column(Float)
    frames_total: Mapped[int | None] = mapped_column(Integer)
    has_audio: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    results: Mapped[list[Result]] = relationship(back_populates="video", cascade="all, delete-orphan")

    @property
    def source_id(self) -> str:
        """A stable short id from the path, used in snippet names."""
        return hashlib.sha1(self.path.encode()).hexdigest()[:10]


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("video_id", "params_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    params_key: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    video: Mapped[Video] = relationship(back_populates="results")
    segments: Mapped[list[SegmentRow]] = relationship(back_populates="result", cascade="all, delete-orphan")

    def video_result(self) -> VideoResult:
        return VideoResult.from_json(self.document)


class SegmentRow(Base):
    __tablename__ = "segments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(64))
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    start_frame: Mapped[int] = mapped_column(Integer)
    end_frame: Mapped[int] = mapped_column(Integer)
    max_score: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    clock_minutes: Mapped[int | None] = mapped_column(
        Integer
    )  # the time its clock shows (0..719 on a 12-hour dial), when read
    clock_confidence: Mapped[float | None] = mapped_column(Float)
    result: Mapped[Result] = relationship(back_populates="segments")


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value, index=True)
    video_path: Mapped[str] = mapped_column(String(4096))
    filename: Mapped[str | None] = mapped_column(String(4096))  # as the caller named it (relative to a media root)
    params: Mapped[dict] = mapped_column(JSON)
    postback_url: Mapped[str | None] = mapped_column(String(2048))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    body_hash: Mapped[str] = mapped_column(String(64), index=True)
    # "key:<Idempotency-Key>" or "body:<hash>" while a keyless duplicate would be a replay: the
    # database, not a read-then-write in the app, keeps two submissions from making two jobs
    dedupe_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    frames_total: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[dict | None] = mapped_column(JSON)  # the stage, and video seconds done of its total (ChunkFanout)
    error: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id", ondelete="SET NULL"))
    postback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    postback_delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    postback_gave_up: Mapped[bool] = mapped_column(Boolean, default=False)
    postback_last_error: Mapped[str | None] = mapped_column(Text)
    postback_next_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)  # when the next attempt is due
    postback_history: Mapped[list] = mapped_column(
        JSON, default=list
    )  # the latest attempts: at, status, error, seconds
    deliveries: Mapped[int] = mapped_column(Integer, default=1)  # 1 + redeliveries asked for; part of the delivery id
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    result: Mapped[Result | None] = relationship()


@dataclass(frozen=True)
class Scanned:
    """A video of the catalog and its latest result's document (None: not scanned)."""

    video_id: int
    path: str
    duration_s: float | None
    result_id: int | None
    document: dict | None


class Snippet(Base):
    __tablename__ = "snippets"
    __table_args__ = (UniqueConstraint("name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(64))
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    path: Mapped[str | None] = mapped_column(String(4096))
    phash: Mapped[str | None] = mapped_column(String(64))
    clock_minutes: Mapped[int | None] = mapped_column(Integer)  # the time its clock shows at its first frame, when read
    clock_confidence: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    video: Mapped[Video] = relationship()


_ADMISSION_LOCK = 0x636C6F636B  # "clock": the advisory lock key of admission on PostgreSQL


class QueueFullError(Exception):
    def __init__(self, active: int, limit: int):
        super().__init__(f"queue is full ({active} jobs queued or running, limit {limit})")
        self.active, self.limit = active, limit


class Remix(Base):
    """A remix ``jobs.join`` made: its file and its document (``clockwork.remix.remix_document``)."""

    __tablename__ = "remixes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(4096))
    label: Mapped[str] = mapped_column(String(64))
    duration_s: Mapped[float] = mapped_column(Float)
    document: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Heartbeat(Base):
    """One row per API replica, written by readiness checks: proof that the catalog takes writes."""

    __tablename__ = "heartbeats"
    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def default_url() -> str:
    url = settings.database_url()
    if url:
        return url
    path = settings.data_dir() / "catalog.sqlite"
    return f"sqlite:///{path}"


def make_engine(url: str | None = None) -> Engine:
    url = url or default_url()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):
            conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below), so it can be BEGIN IMMEDIATE
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # A transaction that may write takes the write lock at its start (waiting up to the busy timeout):
            # a deferred one that read first cannot upgrade once another writer committed ("database is
            # locked" at once), and admission must count and insert under one lock. Reads stay deferred.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


class Catalog:
    """A thin unit-of-work wrapper: ``with catalog.session() as s: ...`` commits or rolls back."""

    def __init__(self, url: str | None = None):
        self.url = url or default_url()
        self.engine = make_engine(self.url)
        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self, *, exclusive: bool = False, read_only: bool = False) -> Iterator[Session]:
        """A transaction. ``exclusive``: one at a time across every process sharing the catalog (SQLite
        serialises every writing transaction anyway; PostgreSQL takes a transaction-scoped advisory lock).
        ``read_only``: SQLite need not take its write lock."""
        with self._sessions() as s:
            with s.begin():
                s.connection(execution_options={"read_only": read_only and not exclusive})
                if exclusive and self.engine.dialect.name == "postgresql":
                    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADMISSION_LOCK})
                yield s

    def close(self) -> None:
        self.engine.dispose()

    # -- videos and results ----------------------------------------------------------------------

    def upsert_video(self, s: Session, path: str, **fields) -> Video:
        video = s.scalar(select(Video).where(Video.path == path))
        if video is None:
            video = Video(path=path, **fields)
            s.add(video)
            s.flush()
        else:
            for k, v in fields.items():
                setattr(video, k, v)
        return video

    def save_result(self, s: Session, path: str, result_: VideoResult | dict, params: dict) -> Result:
        """Store a result and its segments; replaces an earlier result with the same params."""
        vr = result_ if isinstance(result_, VideoResult) else VideoResult.from_json(result_)
        document = vr.to_json()
        video = self.upsert_video(
            s,
            path,
            width=vr.width,
            height=vr.height,
            fps=vr.fps,
            duration_s=vr.duration_s,
            frames_total=vr.frames_total,
        )
        key = params_key(params)
        result = s.scalar(select(Result).where(Result.video_id == video.id, Result.params_key == key))
        if result is None:
            result = Result(video_id=video.id, params_key=key, document=document)
            s.add(result)
        else:
            result.document = document
            result.segments.clear()
        for seg in vr.segments:
            result.segments.append(
                SegmentRow(
                    label=seg.label,
                    start_s=seg.start_s,
                    end_s=seg.end_s,
                    start_frame=seg.start_frame,
                    end_frame=seg.end_frame,
                    max_score=seg.max_score,
                    frames=seg.frames,
                    clock_minutes=seg.clock_time.minutes if seg.clock_time else None,
                    clock_confidence=seg.clock_time.confidence if seg.clock_time else None,
                )
            )
        s.flush()
        return result

    def add_result(self, path: str, result_: VideoResult | dict, params: dict) -> int:
        """``save_result`` in a session of its own; the new result's id."""
        with self.session() as s:
            return self.save_result(s, path, result_, params).id

    def latest_result(self, s: Session, video: Video) -> Result | None:
        return s.scalar(
            select(Result).where(Result.video_id == video.id).order_by(Result.created_at.desc(), Result.id.desc())
        )

    # -- jobs --------------------------------------------------------------------------------------

    def claim(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Atomically take a job whose lease is free or expired. True when this owner now holds it."""
        now = utcnow()
        with self.session() as s:
            res = s.execute(
                update(Job)
                .where(Job.id == job_id)
                .where((Job.lease_owner.is_(None)) | (Job.lease_expires_at < now) | (Job.lease_owner == owner))
                .values(lease_owner=owner, lease_expires_at=now + dt.timedelta(seconds=lease_s))
            )
            return res.rowcount == 1

    def renew(self, job_id: str, owner: str, lease_s: float) -> None:
        with self.session() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner)
                .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
            )

    def release(self, job_id: str, owner: str) -> None:
        with self.session() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    def orphaned_jobs(self, limit: int = 100) -> list[str]:
        """Jobs with work left whose lease is free or expired: detection, or a postback attempt that is due."""
        now = utcnow()
        postback_due = (
            Job.postback_url.is_not(None)
            & Job.postback_delivered.is_(False)
            & Job.postback_gave_up.is_(False)
            & (Job.postback_next_at.is_(None) | (Job.postback_next_at <= now))
        )
        with self.session(read_only=True) as s:
            rows = s.scalars(
                select(Job.id)
                .where(Job.status.in_(ACTIVE) | postback_due)
                .where((Job.lease_owner.is_(None)) | (Job.lease_expires_at < now))
                .order_by(Job.created_at)
                .limit(limit)
            )
            return list(rows)

    def admit(self, job: Job, *, max_active: int, window_s: float) -> tuple[Job, bool]:
        """Insert ``job`` unless a job with its dedupe key exists (returned, with False) or ``max_active``
        jobs are queued or running (:class:`QueueFullError`). One exclusive transaction: concurrent
        submissions cannot both pass the count, and two identical ones make one job."""
        with self.session(exclusive=True) as s:
            since = utcnow() - dt.timedelta(seconds=window_s)
            if job.dedupe_key and job.dedupe_key.startswith("body:"):  # a keyless replay only within the window
                s.execute(
                    update(Job).where(Job.dedupe_key == job.dedupe_key, Job.created_at < since).values(dedupe_key=None)
                )
            if job.dedupe_key:
                existing = s.scalar(select(Job).where(Job.dedupe_key == job.dedupe_key))
                if existing is None and job.dedupe_key.startswith("body:"):  # the same body sent earlier with a key
                    existing = s.scalar(
                        select(Job)
                        .where(Job.body_hash == job.body_hash, Job.created_at >= since)
                        .order_by(Job.created_at.desc())
                    )
                if existing is not None:
                    s.expunge(existing)
                    return existing, False
            active = s.scalar(select(func.count()).select_from(Job).where(Job.status.in_(ACTIVE))) or 0
            if active >= max_active:
                raise QueueFullError(active, max_active)
            s.add(job)
            s.flush()
            s.expunge(job)
            return job, True

    def write_check(self, owner: str) -> None:
        """A real write (raises when the catalog cannot take one: full disk, read-only, unreachable)."""
        with self.session() as s:
            row = s.get(Heartbeat, owner)
            if row is None:
                s.add(Heartbeat(owner=owner, at=utcnow()))
            else:
                row.at = utcnow()

    def list_jobs(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[Job], int]:
        with self.session(read_only=True) as s:
            where = [Job.status == status] if status else []
            total = s.scalar(select(func.count()).select_from(Job).where(*where)) or 0
            jobs = list(
                s.scalars(select(Job).where(*where).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset))
            )
            for job in jobs:
                s.expunge(job)
        return jobs, total

    def cancel(self, job_id: str) -> bool:
        """Mark a queued or running job cancelled; False when it had already ended."""
        with self.session() as s:
            res = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE))
                .values(
                    status=JobStatus.CANCELLED.value,
                    error="cancelled by request",
                    finished_at=utcnow(),
                    dedupe_key=None,
                )
            )
            return res.rowcount == 1

    def redeliver(self, job_id: str) -> None:
        """Start a new delivery of an ended job's result (a new delivery id; attempts count from 0)."""
        with self.session() as s:
            job = s.get(Job, job_id)
            job.deliveries = (job.deliveries or 1) + 1
            job.postback_attempts, job.postback_delivered, job.postback_gave_up = 0, False, False
            job.postback_next_at, job.postback_last_error = None, None

    def job(self, job_id: str) -> Job | None:
        """A job, detached from its session (read its columns, not its relationships)."""
        with self.session(read_only=True) as s:
            job = s.get(Job, job_id)
            if job is not None:
                s.expunge(job)
            return job

    def _set(self, job_id: str, **values) -> None:
        with self.session() as s:
            s.execute(update(Job).where(Job.id == job_id).values(**values))

    def start_job(self, job_id: str, *, attempts: int) -> None:
        """A run of the job begins: running, its attempt counted, progress from zero."""
        self._set(
            job_id,
            status=JobStatus.RUNNING.value,
            started_at=utcnow(),
            attempts=attempts,
            frames_done=0,
            progress=None,
            error=None,
        )

    def set_frames_total(self, job_id: str, frames_total: int) -> None:
        self._set(job_id, frames_total=frames_total)

    def record_progress(self, job_id: str, *, frames_done: int, progress: dict) -> None:
        self._set(job_id, frames_done=frames_done, progress=progress)

    def finish_job(
        self, job_id: str, *, document: dict | None, error: str | None, params: dict, timings: dict | None = None
    ) -> str | None:
        """The run's end: succeeded with its result (saved for the video, ``params`` as it was detected), or failed with
        its error. A job cancelled while it ran stays cancelled. Returns the status it ended in (None: cancelled)."""
        with self.session() as s:
            row = s.get(Job, job_id)
            if row.status == JobStatus.CANCELLED:
                return None
            row.finished_at = utcnow()
            row.timings = {**(row.timings or {}), **(timings or {})}
            if document is not None:
                row.result_id = self.save_result(s, row.video_path, document, params).id
                row.status = JobStatus.SUCCEEDED.value
                # every frame has been gone through, sampled or not: progress ends at 100%
                row.frames_done = row.frames_total = document["frames_total"]
            else:
                row.status, row.error = JobStatus.FAILED.value, error
            return row.status

    def record_postback(
        self,
        job_id: str,
        *,
        attempts: int,
        delivered: bool,
        gave_up: bool,
        last_error: str | None,
        next_at: dt.datetime | None,
        entry: dict,
        keep: int,
    ) -> None:
        """One postback attempt's outcome; the history keeps the last ``keep`` attempts."""
        with self.session() as s:
            job = s.get(Job, job_id)
            job.postback_attempts, job.postback_delivered, job.postback_gave_up = attempts, delivered, gave_up
            job.postback_last_error, job.postback_next_at = last_error, next_at
            job.postback_history = [*(job.postback_history or []), entry][-keep:]

    def outcome(self, job_id: str) -> tuple[Job, dict | None]:
        """An ended job and its result document (None unless it succeeded)."""
        with self.session(read_only=True) as s:
            job = s.get(Job, job_id)
            document = job.result.document if job.status == JobStatus.SUCCEEDED and job.result is not None else None
            s.expunge(job)
            return job, document

    # -- videos, results, snippets and remixes -------------------------------------------------------

    def result(self, result_id: int) -> tuple[VideoResult, int]:
        """A stored result and the id of its video."""
        with self.session(read_only=True) as s:
            row = s.get(Result, result_id)
            return row.video_result(), row.video_id

    def scanned(self, video_id: int) -> Scanned | None:
        """A video of the catalog and its latest result (None: no such video)."""
        with self.session(read_only=True) as s:
            video = s.get(Video, video_id)
            return None if video is None else self._scanned(s, video)

    def _scanned(self, s: Session, video: Video) -> Scanned:
        result = self.latest_result(s, video)
        return Scanned(
            video.id, video.path, video.duration_s, result.id if result else None, result.document if result else None
        )

    def library(self) -> dict[str, Scanned]:
        """Every video of the catalog by path, with its latest result."""
        with self.session(read_only=True) as s:
            return {v.path: self._scanned(s, v) for v in s.scalars(select(Video))}

    def video_ids(self, paths: Iterable[str]) -> dict[str, int]:
        with self.session(read_only=True) as s:
            return dict(s.execute(select(Video.path, Video.id).where(Video.path.in_(list(paths)))).all())

    def remixes(self, limit: int) -> list[Remix]:
        """The latest remixes, newest first (detached)."""
        with self.session(read_only=True) as s:
            rows = list(s.scalars(select(Remix).order_by(Remix.created_at.desc(), Remix.id.desc()).limit(limit)))
            for row in rows:
                s.expunge(row)
            return rows

    def remix(self, remix_id: int | None = None) -> Remix | None:
        """One remix (None: the latest), detached."""
        with self.session(read_only=True) as s:
            row = (
                s.get(Remix, remix_id)
                if remix_id is not None
                else s.scalar(select(Remix).order_by(Remix.created_at.desc(), Remix.id.desc()))
            )
            if row is not None:
                s.expunge(row)
            return row

    def add_remix(self, path: str, *, label: str, duration_s: float, document: dict) -> int:
        with self.session() as s:
            row = Remix(path=path, label=label, duration_s=duration_s, document=document)
            s.add(row)
            s.flush()
            return row.id

    def videos_by_results(self) -> dict[str, bool]:
        """Every video's path, and whether it has a result."""
        with self.session(read_only=True) as s:
            return {v.path: bool(v.results) for v in s.scalars(select(Video))}

    def results_to_cut(self) -> list[tuple[Video, VideoResult]]:
        """Every video with a result, and its latest result (the videos detached)."""
        with self.session(read_only=True) as s:
            out = []
            for video in s.scalars(select(Video).where(Video.results.any())):
                result = self.latest_result(s, video).video_result()
                s.expunge(video)
                out.append((video, result))
            return out

    def snippets(self, label: str) -> dict[str, Snippet]:
        """Every snippet of ``label`` by name (detached), in one query."""
        with self.session(read_only=True) as s:
            rows = list(s.scalars(select(Snippet).where(Snippet.label == label)))
            for row in rows:
                s.expunge(row)
            return {row.name: row for row in rows}

    def plan_snippets(self, planned: list[dict]) -> None:
        """Snippets to cut (pending), made or reset in one transaction. Each entry: ``name``, ``video_id``, ``label``,
        ``start_s``, ``end_s``, ``max_score``, ``path``, and what its clock shows (``clock_minutes``,
        ``clock_confidence``)."""
        with self.session() as s:
            existing = {
                row.name: row
                for row in s.scalars(select(Snippet).where(Snippet.name.in_([p["name"] for p in planned])))
            }
            for p in planned:
                row = existing.get(p["name"])
                if row is None:
                    row = Snippet(
                        name=p["name"],
                        video_id=p["video_id"],
                        label=p["label"],
                        start_s=p["start_s"],
                        end_s=p["end_s"],
                        max_score=p["max_score"],
                    )
                    s.add(row)
                row.clock_minutes, row.clock_confidence = p["clock_minutes"], p["clock_confidence"]
                row.status, row.error, row.path = "pending", None, p["path"]

    def finish_snippet(self, name: str, *, phash: str | None = None, error: str | None = None) -> None:
        with self.session() as s:
            row = s.scalar(select(Snippet).where(Snippet.name == name))
            row.status, row.phash, row.error = ("failed", None, error) if error else ("done", phash, None)

    def count_snippets(self, label: str, status: str = "done") -> int:
        with self.session(read_only=True) as s:
            return (
                s.scalar(
                    select(func.count()).select_from(Snippet).where(Snippet.label == label, Snippet.status == status)
                )
                or 0
            )

    def snippet_labels(self) -> list[str]:
        with self.session(read_only=True) as s:
            return sorted(set(s.scalars(select(Snippet.label).where(Snippet.status == "done"))))

    def snippets_to_join(self, label: str) -> list[tuple[Snippet, str]]:
        """Every cut snippet of ``label`` with its source video's path (detached)."""
        with self.session(read_only=True) as s:
            rows = s.execute(
                select(Snippet, Video.path)
                .join(Video, Snippet.video_id == Video.id)
                .where(Snippet.label == label, Snippet.status == "done")
            ).all()
            for snippet, _ in rows:
                s.expunge(snippet)
            return [(snippet, path) for snippet, path in rows]

    def count_active(self) -> int:
        with self.session(read_only=True) as s:
            return s.scalar(select(func.count()).select_from(Job).where(Job.status.in_(ACTIVE))) or 0

    def counts_by_status(self) -> dict[str, int]:
        with self.session(read_only=True) as s:
            rows = s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        counts = {status.value: 0 for status in JobStatus}
        counts.update({status: n for status, n in rows})
        return counts


def _add_missing_columns(engine: Engine) -> None:
    """A catalog made by an earlier version gains the columns added since (nullable; the code reads a
    missing value as the column's default), and unique columns get a unique index. No data is changed."""
    from sqlalchemy import inspect

    with engine.begin() as conn:
        inspector = inspect(conn)
        for table in Base.metadata.sorted_tables:
            if not inspector.has_table(table.name):
                continue
            have = {col["name"] for col in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
                if column.unique:
                    conn.exec_driver_sql(
                        f"CREATE UNIQUE INDEX IF NOT EXISTS uq_{table.name}_{column.name} ON {table.name} "
                        f"({column.name})"
                    )
                elif column.index:
                    conn.exec_driver_sql(
                        f"CREATE INDEX IF NOT EXISTS ix_{table.name}_{column.name} ON {table.name} ({column.name})"
                    )


def params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]
