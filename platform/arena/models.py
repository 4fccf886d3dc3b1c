"""The tournament's tables, all in one place.

Vocabulary follows the 2017 evaluation library: a dataset is cut into image batches; an
attack job is one attack submission at one epsilon over one batch and yields adversarial
images; a defense job is one defense over one batch, either clean or one attack job's
output, and yields one classification per image. Unique constraints (for classifications,
the primary key) make a result impossible to store twice, whatever the executor does.
"""

import secrets
import unicodedata
from datetime import datetime, timezone
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from arena.config import EpsilonSchedule


def _enum(enum_class: type[StrEnum]) -> Enum:
    """Stored as plain strings (no database enum types to migrate), loaded back as members."""
    return Enum(enum_class, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_naming_key() -> str:
    """A round's naming key (``Round.naming_key``): 32 random bytes, as hex."""
    return secrets.token_hex(32)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands stored moments back without their zone; every moment stored here is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


def _unique_by_source(prefix: str, owner: str, adversarial: str, clean: str) -> tuple[Index, Index]:
    """Two partial unique indexes: (owner, adversarial) where the adversarial reference is set,
    (owner, clean) where it is null; one unique constraint over a nullable column would let
    NULLs repeat."""
    present, absent = text(f"{adversarial} IS NOT NULL"), text(f"{adversarial} IS NULL")
    return (
        Index(f"uq_{prefix}_adversarial", owner, adversarial, unique=True, sqlite_where=present, postgresql_where=present),
        Index(f"uq_{prefix}_clean", owner, clean, unique=True, sqlite_where=absent, postgresql_where=absent),
    )


class SubmissionKind(StrEnum):
    ATTACK = "attack"
    TARGETED_ATTACK = "targeted_attack"
    DEFENSE = "defense"
    #: The query track's (docs/query-track.md): decision-based attacks that query served
    #: defenses through Arena; stored in 20 characters, hence the short targeted name.
    QUERY_ATTACK = "query_attack"
    QUERY_TARGETED = "query_targeted"

    @property
    def is_attack(self) -> bool:
        """An attack of the batch (2017) tracks: the query track's never runs batch jobs."""
        return self in (SubmissionKind.ATTACK, SubmissionKind.TARGETED_ATTACK)

    @property
    def is_query_attack(self) -> bool:
        return self in (SubmissionKind.QUERY_ATTACK, SubmissionKind.QUERY_TARGETED)

    @property
    def is_targeted(self) -> bool:
        return self in (SubmissionKind.TARGETED_ATTACK, SubmissionKind.QUERY_TARGETED)


class SubmissionStatus(StrEnum):
    """``queued`` until its dry run (a ``DryRun`` job) has run, then ``accepted`` or
    ``rejected``; ``disqualified`` by organizers. People are shown "checking" while the dry
    run is running: that is the job's state, read from the job, never copied here."""

    QUEUED = "queued"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DISQUALIFIED = "disqualified"


class Visibility(StrEnum):
    """Who sees a round's leaderboards."""

    LIVE = "live"  # everyone, as results come in
    HIDDEN = "hidden"  # organizers only, until the round is published
    PUBLISHED = "published"  # everyone; the round is frozen


class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # handed to the broker; back to pending if its lease runs out first
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"  # the platform failed (not the submission); the job is planned again


class JobKind(StrEnum):
    """The two kinds of job, and their job and attempt columns: one place to ask, so no code
    branches on a bare "attack"/"defense" string."""

    ATTACK = "attack"
    DEFENSE = "defense"

    @classmethod
    def of(cls, submission_kind: SubmissionKind) -> "JobKind":
        """The jobs a submission of this kind runs."""
        return cls.ATTACK if submission_kind.is_attack else cls.DEFENSE

    @property
    def job_class(self) -> type["AttackJob"] | type["DefenseJob"]:
        return AttackJob if self is JobKind.ATTACK else DefenseJob

    @property
    def attempt_column(self):
        """The column of ``JobAttempt`` that points at a job of this kind."""
        return JobAttempt.job_column(self.job_class)


class ClassificationProblem(StrEnum):
    MISSING = "missing"  # no line for this image in result.csv
    INVALID = "invalid"  # a line that does not parse or a label outside 1..1000
    DUPLICATE = "duplicate"  # the image was answered twice with different labels


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    batches: Mapped[list["Batch"]] = relationship(back_populates="dataset", order_by="Batch.index")


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("dataset_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)

    dataset: Mapped[Dataset] = relationship(back_populates="batches")
    images: Mapped[list["Image"]] = relationship(back_populates="batch", order_by="Image.name")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("dataset_id", "name"),
        CheckConstraint("true_label BETWEEN 1 AND 1000", name="true_label_range"),
        CheckConstraint("target_class BETWEEN 1 AND 1000", name="target_class_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))  # the ImageId of the dataset CSV; never shown to submissions
    true_label: Mapped[int] = mapped_column(Integer)
    target_class: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))

    batch: Mapped[Batch] = relationship(back_populates="images")


def name_key(name: str) -> str:
    """What two team names must not share: "bravo", "BRAVO" and a full-width "ｂｒａｖｏ" are
    one team (Unicode's NFKC and case folding). The name itself is checked by
    ``admin.teams.team_name``."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).strip().casefold())


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    name_key: Mapped[str | None] = mapped_column(String(200), unique=True, index=True)  # set with the name, below
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)  # the team's web token, hashed

    members: Mapped[list["TeamMember"]] = relationship(
        back_populates="team", cascade="all, delete-orphan", order_by="TeamMember.id"
    )

    @validates("name")
    def _keyed(self, _field: str, name: str) -> str:
        """The key follows the name, wherever a team is made or renamed."""
        self.name_key = name_key(name)
        return name


class TeamMember(Base):
    """A person in a team: organizers need to know who to reach, teams to see who is in."""

    __tablename__ = "team_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    contact: Mapped[str | None] = mapped_column(String(200))  # e-mail or anything the organizers asked for

    team: Mapped[Team] = relationship(back_populates="members")


class WebSession(Base):
    """A browser's login: the cookie carries a random session id, this row only its sha256.

    ``team_id`` is null for an organizer. ``binding`` ties the row to the credential it was
    opened with (an HMAC keyed by the session id over the team's token hash, or over the
    organizer credential's hash), so a new team token or organizer credential ends the
    session, and the row alone says nothing about either."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    binding: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Tournament(Base):
    """What organizers change from the web while a tournament runs; one row."""

    __tablename__ = "tournament"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200), default="Arena tournament")
    leaderboards_public: Mapped[bool] = mapped_column(Boolean, default=True)  # False hides them until the end
    uploads_open: Mapped[bool] = mapped_column(Boolean, default=True)
    overview: Mapped[str] = mapped_column(Text, default="", server_default="")  # Markdown, by the organizers
    rules: Mapped[str] = mapped_column(Text, default="", server_default="")  # Markdown, by the organizers
    self_registration: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))


class Submission(Base):
    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[SubmissionKind] = mapped_column(_enum(SubmissionKind))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)  # of the unpacked tree, so zip and tar dedup alike
    meta: Mapped[dict] = mapped_column("metadata", JSON)
    status: Mapped[SubmissionStatus] = mapped_column(_enum(SubmissionStatus), default=SubmissionStatus.QUEUED)
    reason: Mapped[str | None] = mapped_column(Text)
    #: What the team says the submission is, as it typed it at upload (shown on its page).
    description: Mapped[str | None] = mapped_column(Text)
    validation_report: Mapped[dict | None] = mapped_column(JSON)
    #: Images per container run, fixed once from the dry run (``execution.packing``).
    pack_images: Mapped[int | None] = mapped_column(Integer)
    #: An organizers' reference entry (2017 published six): shown apart and, by default, unranked.
    baseline: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: The engine's image ids (``sha256:...``) that ``container`` and ``container_gpu`` named at
    #: intake, or with a registry their digest references (``HOST:PORT/repo@sha256:...``):
    #: every run uses these, never the tag (``sandbox.pinning``). Null: not pinned yet
    #: (taken in before pinning, or a ``container_gpu`` the intake engine lacked): pinned by
    #: the first run that needs it.
    container_image: Mapped[str | None] = mapped_column(String(400))
    container_gpu_image: Mapped[str | None] = mapped_column(String(400))
    #: The determinism probe of the dry run: the share of its images whose output differed
    #: between two runs (0.0: none). Null: not probed (taken in before the probe existed).
    nondeterministic_share: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    team: Mapped[Team] = relationship()
    dry_run: Mapped["DryRun | None"] = relationship(viewonly=True, uselist=False)

    @property
    def shown_status(self) -> str:
        """Its status as people are told it: "checking" while its dry run runs."""
        if self.status is SubmissionStatus.QUEUED and self.dry_run is not None \
                and self.dry_run.status is JobStatus.RUNNING and self.dry_run.attempt > 0:
            return "checking"
        return self.status.value

    @property
    def container(self) -> str:
        return self.meta["container"]

    @property
    def entry_point(self) -> str:
        return self.meta["entry_point"]

    @property
    def images(self) -> dict[str, tuple[str, str | None]]:
        """Each image the metadata names, by its field (``container``, ``container_gpu``):
        the tag and the image id pinned for it (None: not pinned yet)."""
        pins = {"container": self.container_image, "container_gpu": self.container_gpu_image}
        return {field: (self.meta[field], pins[field]) for field in pins if self.meta.get(field)}

    @property
    def pins(self) -> dict[str, str]:
        """The pinned image ids by metadata field, those pinned only."""
        return {field: pinned for field, (_tag, pinned) in self.images.items() if pinned}


class Round(Base):
    """One stage of a competition: its own dataset, epsilons, epsilon schedule, time limit,
    upload window and quotas (what its containers run under is the round's alone). Results are keyed by dataset, so a round has a dataset of its own: a submission
    carried into the next round runs again on the new images only."""

    __tablename__ = "rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), unique=True)
    epsilons: Mapped[list[int]] = mapped_column(JSON)
    eps_schedule: Mapped[EpsilonSchedule] = mapped_column(_enum(EpsilonSchedule), default=EpsilonSchedule.ALL)
    seconds_per_image: Mapped[float] = mapped_column(Float)
    opens_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # none: open from creation
    closes_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # none: open until closed
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility), default=Visibility.LIVE)
    daily_quota: Mapped[int | None] = mapped_column(Integer)  # uploads per team and track in any 24 hours
    total_quota: Mapped[int | None] = mapped_column(Integer)  # uploads per team and track in the round
    rank_baselines: Mapped[bool] = mapped_column(Boolean, default=False)
    data_public: Mapped[bool] = mapped_column(Boolean, default=False)  # its images downloadable (a development set)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: The key its containers' input names are made under (``sandbox.staging``), hex; its own,
    #: so that publishing it (in the bundle, to replay the round) reveals no other round's names.
    naming_key: Mapped[str] = mapped_column(String(64), default=new_naming_key)
    #: False for a round that had results when migration 0019 gave it its key: those were
    #: named under the installation's key and database ids, which its key does not reproduce.
    replayable: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    #: Queries a query-track attack may make per image and defense (AVC 2018: 1,000).
    query_budget: Mapped[int] = mapped_column(Integer, default=1000, server_default="1000")
    #: Which pairs the query track runs: None, all; K, each query attack against the top K served
    #: defenses of the batch defense leaderboard, and each served defense against the top K query attacks.
    query_top_k: Mapped[int | None] = mapped_column(Integer)
    #: Images the query track runs on: the first batches holding at least this many; None: all.
    query_images: Mapped[int | None] = mapped_column(Integer)
    #: Whether a served defense whose dry run answered differently when asked again, in another
    #: order or in one batch, is rejected (True) or accepted with a flag (False, the default).
    refuse_stateful_defenses: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    dataset: Mapped[Dataset] = relationship()


class Entry(Base):
    """A submission taking part in a round: by upload, or carried over from an earlier round
    with the same stored code. ``chosen`` marks the entry a team picked to count for its
    track (otherwise its latest accepted one counts)."""

    __tablename__ = "round_entries"

    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    carried: Mapped[bool] = mapped_column(Boolean, default=False)
    chosen: Mapped[bool] = mapped_column(Boolean, default=False)

    round: Mapped[Round] = relationship()
    submission: Mapped[Submission] = relationship()


class JobState:
    """Where a job stands, and who holds it: shared by attack and defense jobs."""

    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.PENDING, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # the fencing token
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The worker that claimed it last (``workers.id``; no key, as on the answers' table: a
    #: worker row is never deleted).
    worker_id: Mapped[int | None] = mapped_column(Integer)


class AttackJob(JobState, Base):
    __tablename__ = "attack_jobs"
    __table_args__ = (UniqueConstraint("submission_id", "epsilon", "batch_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    epsilon: Mapped[int] = mapped_column(Integer)

    submission: Mapped[Submission] = relationship()
    batch: Mapped[Batch] = relationship()
    adversarial_images: Mapped[list["AdversarialImage"]] = relationship(back_populates="attack_job")


class DryRun(JobState, Base):
    """A submission's dry run as a job: image pinning, one batch run, the determinism probe,
    under the round's epsilons and time limit. Claimed, leased, fenced, retried and reaped
    like attack and defense jobs (``job_states``), run by any runner or worker, never by
    the web process that took the upload."""

    __tablename__ = "dry_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), unique=True)
    #: The round it was uploaded to: its epsilons and time limit are the dry run's.
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: The platform's last failure (the engine, a missing image), for organizers; a retry clears nothing.
    error: Mapped[str | None] = mapped_column(Text)
    #: Its first run's whole log, an object of the store (``data/logs.py``): its hash and size;
    #: null before the run, or for a run whose full log is not collected (migration 0023).
    log_sha256: Mapped[str | None] = mapped_column(String(64))
    log_size: Mapped[int | None] = mapped_column(Integer)

    submission: Mapped[Submission] = relationship()


class AdversarialImage(Base):
    __tablename__ = "adversarial_images"
    __table_args__ = (UniqueConstraint("attack_job_id", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attack_job_id: Mapped[int] = mapped_column(ForeignKey("attack_jobs.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    linf: Mapped[int] = mapped_column(Integer)  # after clipping, so never above epsilon
    #: The Euclidean norm of the kept perturbation, 0-255 scale, every value of the image; NULL
    #: on rows stored before migration 0011 (unknown).
    l2: Mapped[float | None] = mapped_column(Float)
    clipped: Mapped[bool] = mapped_column(Boolean, default=False)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)  # replaced by the clean image
    wrong_size: Mapped[bool] = mapped_column(Boolean, default=False)  # resized to 299x299 (bicubic), as in 2017
    converted: Mapped[str | None] = mapped_column(String(40))  # mode and format converted to an RGB PNG, as in 2017

    attack_job: Mapped[AttackJob] = relationship(back_populates="adversarial_images")
    image: Mapped[Image] = relationship()


class DefenseJob(JobState, Base):
    """One defense over one batch: clean when ``attack_job_id`` is null."""

    __tablename__ = "defense_jobs"
    __table_args__ = _unique_by_source("defense_job", "submission_id", "attack_job_id", "batch_id")

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    attack_job_id: Mapped[int | None] = mapped_column(ForeignKey("attack_jobs.id", ondelete="CASCADE"), index=True)

    submission: Mapped[Submission] = relationship()
    batch: Mapped[Batch] = relationship()
    attack_job: Mapped[AttackJob | None] = relationship()


class Classification(Base):
    """A defense's answer for one image; ``label`` is null when the answer is missing or invalid.

    This table grows to 200 million rows in a 2017-size tournament, so it carries one index,
    its primary key (defense job, image), and no foreign key: each index and each key is work
    per inserted row (a key's trigger costs about as much as the COPY itself on PostgreSQL;
    docs/benchmarks.md). The primary key alone makes a second answer impossible: a defense
    job is one defense over one attack job's output or one clean batch, so (job, image)
    names one answer. ``defense_id`` and ``adversarial_image_id`` are copied from the job
    and its inputs in the transaction that holds the job's lock, and the answers are deleted
    with their jobs by ``results.answers.forget`` (migration 0013).
    """

    __tablename__ = "classifications"
    __table_args__ = (PrimaryKeyConstraint("defense_job_id", "image_id"), {"sqlite_with_rowid": False})

    defense_job_id: Mapped[int] = mapped_column(Integer)
    defense_id: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[int] = mapped_column(Integer)
    adversarial_image_id: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[int | None] = mapped_column(Integer)
    problem: Mapped[ClassificationProblem | None] = mapped_column(_enum(ClassificationProblem))


class QueryJob(JobState, Base):
    """One query-track attack against one served defense over one batch (``execution.query_jobs``):
    both containers run at once and Arena carries every query between them."""

    __tablename__ = "query_jobs"
    __table_args__ = (UniqueConstraint("attack_id", "defense_id", "batch_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attack_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    defense_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    budget: Mapped[int | None] = mapped_column(Integer)  # queries per image it ran under (the round's at the time)
    seconds: Mapped[float | None] = mapped_column(Float)
    attack_exit_code: Mapped[int | None] = mapped_column(Integer)
    attack_timed_out: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Why the served defense stopped answering (crash, hang, garbage), None while it answered:
    #: unanswered queries and scoring labels then count as misclassified, as a missing 2017 label does.
    defense_failure: Mapped[str | None] = mapped_column(Text)
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)  # the attack's, as its team should read them
    attack_log: Mapped[str | None] = mapped_column(Text)
    defense_log: Mapped[str | None] = mapped_column(Text)

    attack: Mapped[Submission] = relationship(foreign_keys=[attack_id])
    defense: Mapped[Submission] = relationship(foreign_keys=[defense_id])
    batch: Mapped[Batch] = relationship()


class QueryResult(Base):
    """One image of a query job: the queries it cost, the attack's output and how the served
    defense labelled it, as returned and clipped to each epsilon of the round."""

    __tablename__ = "query_results"
    __table_args__ = (PrimaryKeyConstraint("query_job_id", "image_id"),)

    query_job_id: Mapped[int] = mapped_column(ForeignKey("query_jobs.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    queries: Mapped[int] = mapped_column(Integer)  # answered, counted against the budget
    refused: Mapped[int] = mapped_column(Integer, default=0)  # refused past the budget
    sha256: Mapped[str] = mapped_column(String(64))  # the output as returned (the clean image when missing)
    linf: Mapped[int] = mapped_column(Integer)
    l2: Mapped[float] = mapped_column(Float)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)
    label: Mapped[int | None] = mapped_column(Integer)  # the defense's label for the output; None: unanswered
    #: The defense's label for the output clipped to each epsilon, by epsilon (JSON keys are strings).
    labels_at: Mapped[dict[str, int | None]] = mapped_column(JSON, default=dict)


class Worker(Base):
    """A process that takes jobs (a Celery worker, an ``arena run``, the web's runner or
    upload checker), as its last heartbeat described it. Rows are never deleted: a worker
    that stopped beating stays, marked, so that an organizer sees a host that went away and
    what it was running, rather than a list that quietly got shorter."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # celery, run, checker
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    engine_version: Mapped[str | None] = mapped_column(String(50))  # none: no engine reachable
    runtimes: Mapped[list[str]] = mapped_column(JSON, default=list)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    concurrency: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)  # a worker's; empty for the others
    #: The engine's images, by id and by tag, so a page can say whether anyone can run a pin.
    images: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # a clean exit
    #: Set by an organizer: take no new work, finish what runs.
    draining: Mapped[bool] = mapped_column(Boolean, default=False)


#: A job attempt names exactly one job, of one of the three kinds (migration 0025).
EXACTLY_ONE_JOB = " + ".join(f"(CASE WHEN {column} IS NULL THEN 0 ELSE 1 END)"
                             for column in ("attack_job_id", "defense_job_id", "query_job_id")) + " = 1"


class JobAttempt(Base):
    """One claim of a job, the container run (a query job's: its two) that came of it: what
    happened, for the submission page, the hosts page and debugging."""

    __tablename__ = "job_attempts"
    __table_args__ = (CheckConstraint(EXACTLY_ONE_JOB, name="exactly_one_job"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attack_job_id: Mapped[int | None] = mapped_column(ForeignKey("attack_jobs.id", ondelete="CASCADE"), index=True)
    defense_job_id: Mapped[int | None] = mapped_column(ForeignKey("defense_jobs.id", ondelete="CASCADE"), index=True)
    query_job_id: Mapped[int | None] = mapped_column(ForeignKey("query_jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float | None] = mapped_column(Float)
    images: Mapped[int | None] = mapped_column(Integer)  # in the whole container run, to learn time per image
    pack_jobs: Mapped[int | None] = mapped_column(Integer)  # jobs that shared the container run
    #: The container run, as the id of its first attempt row: the attempts claimed together.
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    container_image: Mapped[str | None] = mapped_column(String(400))  # the pin the run used: image id or digest reference
    exit_code: Mapped[int | None] = mapped_column(Integer)
    timed_out: Mapped[bool] = mapped_column(Boolean, default=False)
    killed_reason: Mapped[str | None] = mapped_column(Text)  # output too large, too many files...
    log_excerpt: Mapped[str | None] = mapped_column(Text)
    #: The container run's whole log, an object of the store (``data/logs.py``): its hash and
    #: size; shared by the attempts of one pack (null: none kept, as before migration 0023).
    #: A query job's: the attack's log (its stderr; the served defense's is ``served_log_*``).
    log_sha256: Mapped[str | None] = mapped_column(String(64))
    log_size: Mapped[int | None] = mapped_column(Integer)
    #: A query job's served defense's whole stderr, as ``log_sha256`` and ``log_size`` (migration 0025).
    served_log_sha256: Mapped[str | None] = mapped_column(String(64))
    served_log_size: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)  # a platform error, not the submission's fault
    #: Who ran it (``workers.id``); none for attempts from before workers were recorded.
    worker_id: Mapped[int | None] = mapped_column(Integer, index=True)

    @staticmethod
    def job_column(job_class: type["AttackJob"] | type["DefenseJob"] | type["QueryJob"]):
        """The column that points at a job of this class: the one place that maps them."""
        return {AttackJob: JobAttempt.attack_job_id, DefenseJob: JobAttempt.defense_job_id,
                QueryJob: JobAttempt.query_job_id}[job_class]


class CellTally(Base):
    """Counts of one cell of the attack x defense x epsilon matrix of one dataset, kept in step
    with the classifications (see ``arena.tallies``) so that scores read a few thousand rows
    instead of every per-image answer."""

    __tablename__ = "cell_tallies"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    attack_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True)
    defense_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True)
    epsilon: Mapped[int] = mapped_column(Integer, primary_key=True)
    scored: Mapped[int] = mapped_column(Integer)  # classifications, missing and invalid answers included
    errors: Mapped[int] = mapped_column(Integer)  # label != TrueLabel, or no valid label
    hits: Mapped[int] = mapped_column(Integer)  # label == TargetClass


class CleanTally(Base):
    """Counts of one defense's answers on the clean images of one dataset."""

    __tablename__ = "clean_tallies"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    defense_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True)
    scored: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
