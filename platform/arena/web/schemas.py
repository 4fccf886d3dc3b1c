"""The shapes of what the API takes and answers, for validation and for /openapi.json.

``web.queries`` shapes plain dicts once for the pages and the API; the API routes declare
these models as their ``response_model``, so every answer is checked against its model
before it leaves (a missing or mistyped field is a 500 in the tests, not a surprise for a
client) and /docs shows each field. The leaderboards and the matrix are served as bytes
serialised once per snapshot (``web.cache``): their routes declare the model for the
description only. Nullable fields are ``| None``; fields shown only to some callers
(logs) have a default and are left out, not sent as null, when not shown.
"""

from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel

from arena.config import EpsilonSchedule
from arena.intake import dry_run
from arena.models import (
    ClassificationProblem,
    JobStatus,
    SubmissionKind,
)
from arena.results.judging import MatrixValue
from arena.results.query_scoring import QueryMatrixValue
from arena.sandbox.pinning import PinState
from arena.web.queries import ListedJobs


def _in_utc(moment: datetime) -> datetime:
    """Every time is stored in UTC; SQLite gives it back without its zone, PostgreSQL with it."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


#: A time with its zone, as RFC 3339 (and so OpenAPI's date-time) requires, whatever the database.
Utc = Annotated[datetime, AfterValidator(_in_utc)]
Track = Literal["defense", "attack", "targeted_attack"]


class TournamentUpdate(BaseModel):
    """What to change; a field left out stays as it is."""

    title: str | None = Field(None, min_length=1, max_length=200)
    leaderboards_public: bool | None = None
    uploads_open: bool | None = None


class Disqualification(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="Shown on the submission's page.")


class ValidationIssue(BaseModel):
    """One problem FastAPI found in the request (a parameter out of range, a field missing)."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """Every error answer: a sentence naming the problem, or the list of bad parameters."""

    detail: str | list[ValidationIssue]


class Health(BaseModel):
    ok: bool


class RunState(BaseModel):
    """The run started from the web, as the runner last saw it."""

    running: bool
    dataset: str | None = Field(None, description="The dataset (round) it ran or runs on.")
    message: str
    outcome: str
    errors: list[str]


class TournamentState(BaseModel):
    title: str
    leaderboards_public: bool
    uploads_open: bool
    epsilons: list[int] = Field(description="The newest round's (each round's are in /api/rounds); before any round, "
                                "what a new one gets.")
    eps_schedule: EpsilonSchedule = Field(description="The newest round's epsilon schedule (likewise).")
    seconds_per_image: float = Field(description="The newest round's time limit per image (likewise).")
    run: RunState


class JobCounts(BaseModel):
    """Jobs by status, and how many the whole grid will have (``fraction`` = done / expected)."""

    done: int
    expected: int
    fraction: float
    pending: int
    queued: int
    running: int
    error: int


class TournamentProgress(BaseModel):
    """A dataset, and how far the tournament on it has got."""

    id: int
    name: str
    created_at: Utc
    batches: int
    images: int
    epsilons: list[int]
    attack_jobs: JobCounts
    defense_jobs: JobCounts


class Progress(BaseModel):
    dataset: str
    attack_jobs: JobCounts
    defense_jobs: JobCounts
    run: RunState


class RunStarted(BaseModel):
    """Answered only when a run did start; otherwise the answer is a 409."""

    started: Literal[True]
    dataset: str


class SubmissionSummary(BaseModel):
    id: int
    name: str
    team: str
    kind: SubmissionKind
    status: str = Field(description="queued (its dry run is to come), checking (its dry run is running), "
                        "accepted, rejected or disqualified.")
    reason: str | None
    description: str | None = Field(None, description="What its team says it is, as typed at upload.")
    created_at: Utc
    container: str | None
    baseline: bool = Field(False, description="An organizers' reference entry, shown apart on leaderboards.")
    container_image: str | None = Field(description="The image id `container` was pinned to, or with a registry its digest "
                                        "reference (`host:port/repository@sha256:...`); null: not pinned yet (its first "
                                        "run pins it).")
    container_gpu_image: str | None = Field(description="The image id or digest reference `container_gpu` was pinned to, "
                                            "if it names one.")
    nondeterministic_share: float | None = Field(
        description="Share of the dry-run images whose output changed when the batch ran twice (above 0: "
        "non-deterministic); null when never probed.")


class ImageCheck(BaseModel):
    """One image the submission names: its pin, and what its tag names on the web host's engine now."""

    field: Literal["container", "container_gpu"]
    tag: str
    pinned: str | None
    current: str | None = Field(description="What the tag names now (for a digest pin, the digest reference its image "
                                "has in that repository, if any); null when the engine has no such tag.")
    state: PinState = Field(description="drifted: the tag names another image now; runs keep the pinned one.")


class ValidationReport(dry_run.ValidationReport):
    """The dry run's outcome; ``log_tail`` only for the submission's team and organizers."""

    log_tail: str | None = None


class UploadedSubmission(SubmissionSummary):
    """Stored and queued: its dry run is to come (``status`` queued)."""

    page: str = Field(description="The submission's page, which shows its status as it moves.")


class Attempt(BaseModel):
    """One container run of one of the submission's jobs; ``log_excerpt`` only with the logs."""

    job_id: int
    attempt: int
    started_at: Utc
    seconds: float | None
    images: int | None
    pack_jobs: int | None
    run_id: int | None  # the attempts of one container run share it
    container_image: str | None  # the pin it ran: the engine's image id or the registry digest reference
    exit_code: int | None
    timed_out: bool
    killed_reason: str | None
    platform_error: str | None
    log_excerpt: str | None = None
    log_url: str | None = Field(None, description="With the logs, where its container run's full log is downloaded "
                                "(text/plain; cut past ARENA_FULL_LOG_BYTES, saying so); absent for runs that kept none.")
    log_size: int | None = Field(None, description="With log_url: the full log's bytes (0: the run printed nothing).")


class QueryRun(BaseModel):
    """One query job of the submission (a query attack against a served defense over one
    batch: both containers at once); the log is this submission's side only, with the logs."""

    job_id: int
    opponent: str  # the served defense for an attack, the attack for a served defense
    batch: int
    status: JobStatus
    attempt: int
    seconds: float | None
    exit_code: int | None = Field(description="The attack's container's.")
    timed_out: bool = Field(description="The attack's container's.")
    defense_failure: str | None = Field(description="Why the served defense stopped answering, if it did.")
    problems: list[str] = Field(description="What went wrong on the attack's side, as its team should read it.")
    log_tail: str | None = None
    log_url: str | None = Field(None, description="Its side's full log of the job's latest attempt, where one was "
                                "kept: its team's and organizers'.")
    log_size: int | None = None


class Perturbation(BaseModel):
    """An attack's adversarial images at one epsilon: how far they are from the clean ones (0-255
    scale; a missing output, replaced by the clean image, counts 0). L2 is over the images
    stored with it (``l2_known``); null when none is (images stored before it was recorded)."""

    epsilon: int
    images: int
    missing: int
    linf_mean: float
    linf_max: int
    l2_known: int
    l2_mean: float | None
    l2_max: float | None


class SubmissionDetail(SubmissionSummary):
    validation_report: ValidationReport | None = Field(description="null until the dry run has finished.")
    images: list[ImageCheck]
    progress: JobCounts
    perturbations: list[Perturbation] = Field(description="Attacks only: per epsilon, the perturbation actually made.")
    attempts: list[Attempt] = Field(description="Every attempt of its 50 latest container runs on the dataset asked "
                                    "for (default: its newest round's; attempts sharing a run_id are one run), "
                                    "when this caller may see them: always for its team and organizers, for others "
                                    "on rounds whose results are public.")
    query_runs: list[QueryRun] = Field(default_factory=list, description="Query attacks and served defenses: its 50 "
                                       "latest query jobs on the dataset, newest first, when this caller may see its "
                                       "runs there (as `attempts`).")
    logs_visible: bool
    dry_run_log_url: str | None = Field(None, description="With the logs, where the dry run's full log is downloaded.")
    dry_run_log_size: int | None = Field(None, description="With dry_run_log_url: its bytes (0: it printed nothing).")
    queue_place: int | None = Field(None, description="While queued: 1 when its dry run is the next to be taken.")
    waiting_because: str | None = Field(None, description="While queued: what in the compute stands in its way "
                                        "(no worker checks uploads, all are draining, none has its image).")
    runs_visible: bool = Field(description="False when its runs (and their timings) on this dataset are hidden from "
                               "this caller: a round whose results are not public, for anyone but its team and organizers.")


class Logs(BaseModel):
    dry_run_log_tail: str | None
    runs: list[Attempt] = Field(description="Every attempt of its `limit` latest container runs, newest first: the "
                                "limit counts whole runs (attempts sharing a run_id), never part of one.")


class Job(BaseModel):
    kind: ListedJobs
    id: int
    submission_id: int = Field(description="The job's submission; a query job's query attack.")
    defense_id: int | None = Field(description="Query jobs only: the served defense.")
    batch: int
    epsilon: int | None = Field(description="Attack jobs only.")
    attack_job_id: int | None = Field(description="Defense jobs on adversarial images only.")
    status: JobStatus
    attempt: int
    finished_at: Utc | None


class QueryRow(BaseModel):
    """One submission's line of a query-track board (docs/query-track.md, "Scoring")."""

    submission: str
    team: str
    cells: int = Field(description="(attack, defense, image) cells scored.")
    avc_median_l2: float | None = Field(description="The AVC rule: median L2 of the smallest adversarial (attacks: "
                                                    "lower is stronger; defenses: higher is more robust); null: infinite, "
                                                    "more than half the cells failed.")
    avc_low: float | None = Field(description="Its 95% bootstrap interval over images (null: infinite).")
    avc_high: float | None
    adversarial: int | None = Field(None, description="Attacks: outputs the defense labelled wrongly (targeted: as the target).")
    fooled: int | None = Field(None, description="Defenses: attack outputs it labelled wrongly.")
    median_queries: float | None = Field(None, description="Attacks: median queries per (defense, image).")
    at_epsilon: dict[str, float] = Field(description="The 2017 rule, by epsilon: the output clipped to it; attacks "
                                                     "their success rate, defenses their rate of correct labels.")


class QueryBoards(BaseModel):
    """The query track's boards of a round; empty lists when it ran none."""

    budget: int | None = Field(None, description="Queries per image and defense.")
    epsilons: list[int] = []
    attacks: list[QueryRow] = []
    defenses: list[QueryRow] = []


class LeaderboardRow(BaseModel):
    """One submission's line. Each figure F has ``F_low`` and ``F_high``, its 95% bootstrap
    interval over images (docs/scoring.md). Besides these fields, per epsilon N: the rate
    ``eps=N`` and its bounds ``eps=N_low``, ``eps=N_high``; defenses also the worst case
    ``worst_case_eps=N`` and its bounds (null where nothing is scored yet)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, float | None] = Field(init=False)

    rank: int | None = Field(description="Null for a baseline the round does not rank.")
    submission: str
    team: str
    baseline: bool
    score: int
    score_low: float | None
    score_high: float | None
    scored: int
    normalized: float | None
    normalized_low: float | None
    normalized_high: float | None
    clean_accuracy: float | None = Field(None, description="Defenses only: accuracy on the clean images.")
    clean_accuracy_low: float | None = None
    clean_accuracy_high: float | None = None
    worst_case: float | None = Field(None, description="Defenses only: the share of (image, eps) pairs no attack broke.")
    worst_case_low: float | None = None
    worst_case_high: float | None = None
    worst_case_scored: int | None = Field(None, description="Defenses only: the settled (image, eps) pairs it is over.")
    unique: int | None = Field(None, description="Attacks only: (defense, eps, image) that this attack alone broke.")
    unique_low: int | None = None
    unique_high: int | None = None
    beats_next: float | None = Field(description="How often, resampling the images, its score beats the next row's "
                                                 "(ties half); null on the last row.")
    id: int
    completion: float
    median_seconds_per_100: float | None
    nondeterministic: float | None = Field(
        None, description="Share of the dry-run images whose output changed when it ran twice; above 0 the "
        "submission is flagged non-deterministic; null when it was never probed.")


class Matrix(BaseModel):
    """Attack rows x defense columns: ``counts`` of ``value`` and ``answered`` (scored) per cell,
    and the 95% bootstrap interval of the cell's rate (counts / answered) in ``low`` and ``high``."""

    value: MatrixValue
    epsilon: int | None
    attacks: list[str]
    defenses: list[str]
    counts: list[list[int]]
    answered: list[list[int]]
    low: list[list[float | None]] = Field(description="Rate (0 to 1); null where a cell has no answers.")
    high: list[list[float | None]]
    epsilons: list[int]


class QueryMatrix(BaseModel):
    """The query track's query attack rows x served defense columns (``track=query``), in the
    order of its boards. ``success`` (the 2017 rule): ``counts`` of outputs clipped to the
    epsilon (all: every epsilon pooled) that fooled the defense (targeted: hit the target),
    of ``answered``, with the rate's 95% interval. ``avc`` (the AVC rule, no epsilon): ``l2``,
    the median over images of the smallest adversarial's L2 distance, and ``counts`` of
    outputs adversarial as returned, of ``answered`` images."""

    track: Literal["query"]
    value: QueryMatrixValue
    epsilon: int | None
    attacks: list[str]
    defenses: list[str]
    counts: list[list[int]]
    answered: list[list[int]]
    low: list[list[float | None]] = Field(description="Rate (0 to 1); null where a cell has no answers.")
    high: list[list[float | None]]
    l2: list[list[float | None]] | None = Field(description="avc: the median L2 per cell; null where infinite (the "
                                                            "attack failed on half the images or more) or not run.")
    l2_low: list[list[float | None]] | None = Field(
        description="avc: each median's 95% interval, low bound: the sign test's, two of the cell's own per-image "
        "values (0 where it has fewer than six images); null where infinite or not run.")
    l2_high: list[list[float | None]] | None = Field(description="avc: the interval's high bound; null where infinite "
                                                                 "(a failure) or not run.")
    scale: float | None = Field(description="avc: the largest finite median shown, the lightest shade.")
    epsilons: list[int]
    budget: int | None = Field(description="Queries per image and defense.")


class Curves(RootModel[dict[str, dict[int, float]]]):
    """Misclassified (%) by epsilon, for each defense by name (the query track's: each served
    defense's wrong labels on the query attacks' outputs clipped to epsilon)."""


class Band(BaseModel):
    rate: float
    low: float
    high: float


class CurveBands(RootModel[dict[str, dict[int, Band]]]):
    """Misclassified (%) by epsilon with its 95% bootstrap interval, for each defense by name."""


class ResultRow(BaseModel):
    """One defense's answer on one adversarial image, with the truth beside it; (defense job,
    image) names it."""

    defense_job_id: int
    defense_id: int
    attack_id: int
    epsilon: int
    image_id: int
    image: str
    true_label: int
    target_class: int
    label: int | None
    problem: ClassificationProblem | None
    adversarial_image_id: int
    error: bool
    hit: bool


class Answer(BaseModel):
    """One defense's answer on the adversarial image, and on the clean one (null: not classified)."""

    defense_id: int
    defense: str
    label: int | None
    clean_label: int | None
    problem: ClassificationProblem | None
    correct: bool
    hit: bool


class Drilldown(BaseModel):
    id: int
    image_id: int
    image: str
    true_label: int
    target_class: int
    attack: str
    attack_id: int
    attack_kind: SubmissionKind
    epsilon: int
    linf: int
    clipped: bool
    missing: bool
    wrong_size: bool  # resized, as in 2017
    converted: str | None  # the mode and format it came in, when not an RGB PNG
    answers: list[Answer]


class TeamToken(BaseModel):
    """Shown once: only its hash is stored."""

    team: str
    token: str


class RoundSummary(BaseModel):
    """A round: its data and limits, whether it takes uploads now and for how long."""

    name: str
    dataset: str
    epsilons: list[int]
    eps_schedule: EpsilonSchedule = Field(description="all: every epsilon on every batch; round_robin: batch k at "
                                          "the k-th epsilon, as the 2017 final.")
    seconds_per_image: float
    opens_at: Utc | None
    closes_at: Utc | None
    state: str = Field(description="open, not open yet, or closed (to uploads).")
    seconds_left: float | None = Field(description="Until uploads close, while open with a deadline.")
    visibility: str = Field(description="live, hidden (organizers only) or published (frozen).")
    daily_quota: int | None
    total_quota: int | None
    entries: int = Field(description="Accepted submissions entered.")
    data_public: bool = Field(description="Whether its images and labels can be downloaded (/data).")
    rank_baselines: bool = Field(description="Whether baselines take a rank like teams (else they are shown unranked).")
    refuse_stateful_defenses: bool = Field(
        False, description="Whether a served defense whose dry run answered differently when asked again is rejected "
                           "(else accepted, flagged).")
    uploads_left: dict[str, int | None] | None = Field(
        None, description="For a team: uploads it may still make now, per track (null: no quota).")


class Carry(BaseModel):
    """Submissions to enter into a round without a new upload."""

    submissions: list[str] = Field(default_factory=list, max_length=1000)
    counting_from: str | None = Field(None, max_length=200, description="Every team's counting entries of this round.")


class Carried(BaseModel):
    carried: list[str] = Field(description="Submissions newly entered (those already in the round are skipped).")


class Baseline(BaseModel):
    baseline: bool


class HeldJob(BaseModel):
    kind: Literal["dry run", "attack", "defense", "query"]
    id: int


class WorkerRow(BaseModel):
    """One process that takes jobs, as its last heartbeat described it."""

    id: int
    kind: Literal["celery", "run", "checker"] = Field(description="A Celery worker, an `arena run`, or the web's "
                                                      "upload checker.")
    host: str
    pid: int
    state: Literal["alive", "draining", "stopped", "lost"] = Field(
        description="lost: it stopped beating for a whole lease without saying so (killed, or its host went away).")
    engine_version: str | None = Field(description="None: no Docker engine answered it.")
    runtimes: list[str]
    gpus: int
    concurrency: int
    queues: list[str]
    images: int = Field(description="Images on its engine.")
    pinned_missing: list[str] = Field(description="Pinned images of accepted submissions its engine lacks.")
    running: list[HeldJob] = Field(description="The jobs it holds now.")
    started_at: Utc
    last_seen: Utc
    stopped_at: Utc | None


class OverdueJob(HeldJob):
    worker_id: int | None


class QueryAttempt(BaseModel):
    """One claim of a query job (its attack and its served defense, run together), as the hosts page lists it."""

    attempt_id: int
    job_id: int
    attack: str
    defense: str
    dataset: str = Field(description="The round's dataset the batch is of.")
    batch: int
    status: JobStatus = Field(description="The job's, now.")
    attempt: int = Field(description="The attempt's number: the job's fencing token when it was claimed.")
    worker_id: int | None
    started_at: Utc
    ended_at: Utc | None = Field(description="None while it runs (or until the reaper ends a lost one).")
    seconds: float | None
    exit_code: int | None = Field(description="The attack's container's.")
    error: str | None = Field(description="A platform error, or why the reaper took the job back.")
    attack_log_url: str | None = Field(description="The attack's full log, where one was kept.")
    defense_log_url: str | None = Field(description="The served defense's full log, where one was kept.")


class Workers(BaseModel):
    """The compute: every worker, the jobs by kind and status, what waits in the broker."""

    workers: list[WorkerRow]
    jobs: dict[str, dict[str, int]] = Field(description="Kind of job, then status, then how many.")
    queues: dict[str, int] | None = Field(description="Messages waiting in each broker queue; None without a broker.")
    overdue: list[OverdueJob] = Field(description="Running jobs whose lease ran out: the next turn of any runner "
                                      "hands them on.")
    query_attempts: list[QueryAttempt] = Field(description="The 50 latest attempts of query jobs, newest first.")


class Draining(BaseModel):
    draining: bool = Field(description="True: take no new work, finish what runs; False: take work again.")
