"""The dry run a submission must pass before it enters the tournament.

It runs the code once, exactly as the tournament will, on the dataset's first batch (at
the largest epsilon for attacks) and reports everything a team needs to fix: exit code,
time-out, missing or ill-sized outputs, an unparsable result.csv, and the log tail.

A run that passed is repeated once on the same batch, with the same input names: the
determinism probe. Scores store one answer per image, so a submission whose outputs change
from run to run (an unseeded random defense, a randomised attack) is scored on whichever
answer its one run gave; the probe measures how often that happens (the share of images
whose stored output, or answer, differed) so that organizers can apply their rules. It is
the whole batch, not a part, because a submission may legitimately depend on the other
images of its run; it doubles the dry run's container time, once per submission, but not
its container starts: the second run is made in the first run's container where the image
allows, starting as in a fresh one (``Staging.passes``).
"""

import time
from collections.abc import Iterator
from contextlib import closing

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.data import logs
from arena.data.dataset import DatasetError
from arena.data.images import image_store
from arena.data.logs import KeptLog
from arena.models import Batch, Image, SubmissionKind
from arena.sandbox.attack_run import AttackOutcome, CleanInput, repeated_attack
from arena.sandbox.code import SubmissionCode
from arena.sandbox.containers import RunResult
from arena.sandbox.defense_run import DefenseInput, DefenseOutcome, repeated_defense
from arena.sandbox.query_channel import MAX_BATCH
from arena.sandbox.query_run import execute_query_dry_run
from arena.sandbox.serving import DefenseFailed, served

#: The dry run's runs of its batch: the run, then the determinism probe's.
RUNS = 2


class DeterminismProbe(BaseModel):
    """The dry run's batch run a second time, compared image by image with the first run."""

    images: int
    differing: int  # images whose output (attacks: the stored image's hash) or answer (defenses) changed
    share: float  # differing / images: above 0, the submission is flagged non-deterministic
    seconds: float  # the second run's time: what the probe added to the dry run


class ServingProbe(BaseModel):
    """A served defense asked the dry run's images one by one, then one by one in reverse
    order, then all in one query: a deterministic, stateless defense answers each image the
    same way in all three (docs/query-track.md)."""

    images: int
    differing: int  # images not answered the same in all three passes
    share: float
    failure: str | None  # why the served defense stopped answering; None: it answered every query
    seconds: float


class ValidationReport(BaseModel):
    """What the dry run found; stored as JSON with the submission and served by the API."""

    passed: bool
    images: int
    seconds: float
    time_limit: float
    exit_code: int | None
    timed_out: bool
    problems: list[str] = []  # any of these fails the dry run
    notes: list[str] = []  # accepted as 2017 accepted it, said all the same (none in older reports)
    log_tail: str = ""
    #: Its run's whole log in the store, which the dry run's row names: not part of the report's JSON.
    full_log: KeptLog | None = Field(None, exclude=True)
    determinism: DeterminismProbe | None = None  # None: not probed (a failed run, or an older report)
    serving: ServingProbe | None = None  # None: the defense serves no queries (or an older report)


def sample_batch(session: Session) -> list[Image]:
    """The first batch of the first dataset: the same sample for every submission."""
    batch = session.scalar(select(Batch).order_by(Batch.dataset_id, Batch.index).limit(1))
    if batch is None:
        raise DatasetError("validation needs a dataset: run `arena dataset import` or `arena dataset synth` first", [])
    return list(batch.images)


def _report(settings: Settings, run: RunResult, images: int, problems: list[str], notes: list[str]) -> ValidationReport:
    return ValidationReport(
        passed=run.succeeded and not problems,
        images=images,
        seconds=round(run.seconds, 2),
        time_limit=settings.time_limit(images),
        exit_code=run.exit_code,
        timed_out=run.timed_out,
        problems=problems,
        notes=notes,
        log_tail=run.log_tail,
        full_log=logs.keep(settings, run.log),
    )


def _runs(settings: Settings, code: SubmissionCode, images: list[Image],
          naming_key: bytes) -> Iterator[AttackOutcome | DefenseOutcome]:
    if code.kind is SubmissionKind.DEFENSE:
        inputs = [DefenseInput(i.id, i.sha256, i.name) for i in images]
        return repeated_defense(settings, code, inputs, naming_key, RUNS)
    inputs = [CleanInput(i.id, i.sha256, i.target_class, i.name) for i in images]
    if code.kind.is_query_attack:  # each run in a container of its own, its queries answered afresh
        return (execute_query_dry_run(settings, code, inputs, naming_key) for _ in range(RUNS))
    return repeated_attack(settings, code, inputs, max(settings.epsilons), naming_key, RUNS)


def _outputs(outcome: AttackOutcome | DefenseOutcome) -> dict[int, object]:
    """What the probe compares, by image: the answer of a defense, the hash of the stored
    (clipped) output of an attack, a missing one being the clean image's."""
    if isinstance(outcome, DefenseOutcome):
        return dict(outcome.answers)
    return {result.image_id: result.sha256 for result in outcome.results}


def _probe(images: list[Image], first: AttackOutcome | DefenseOutcome,
           again: AttackOutcome | DefenseOutcome) -> DeterminismProbe:
    before, after = _outputs(first), _outputs(again)
    differing = sum(before.get(i.id) != after.get(i.id) for i in images)
    return DeterminismProbe(images=len(images), differing=differing, share=round(differing / max(len(images), 1), 4),
                            seconds=round(again.run.seconds, 2))


def validate(settings: Settings, code: SubmissionCode, images: list[Image], naming_key: bytes,
             refuse_stateful: bool = False) -> ValidationReport:
    """Run the submission on the sample batch, its inputs named under ``naming_key`` (its
    round's); when it passed, run it again to probe determinism. A served defense is then
    asked the batch three ways; ``refuse_stateful`` (the round's ``refuse_stateful_defenses``)
    rejects one whose answers differ, else it is flagged."""
    with closing(_runs(settings, code, images, naming_key)) as runs:
        outcome = next(runs)
        report = _report(settings, outcome.run, len(images), outcome.problems, outcome.notes)
        if report.passed:
            report.determinism = _probe(images, outcome, next(runs))
    if report.passed and code.serving_entry_point:
        report.serving = _serving_probe(settings, code, images)
        _judge_serving(report, report.serving, refuse_stateful)
    return report


def _serving_probe(settings: Settings, code: SubmissionCode, images: list[Image]) -> ServingProbe:
    """Serve the defense and ask for the batch three ways (``ServingProbe``)."""
    store = image_store(settings)
    pixels = [store.read_pixels(image.sha256).tobytes() for image in images[:MAX_BATCH]]
    time_limit = settings.serving_start_seconds + 3 * settings.time_limit(len(pixels))
    with served(settings, code, time_limit, settings.seconds_per_image) as defense:
        try:
            forward = [label for image in pixels for label in defense.classify([image])]
            backward = [label for image in reversed(pixels) for label in defense.classify([image])][::-1]
            together = defense.classify(pixels)
        except DefenseFailed:
            forward = backward = together = []
        seconds = time.monotonic() - defense.stream.started
    differing = sum(len({a, b, c}) > 1 for a, b, c in zip(forward, backward, together))
    return ServingProbe(images=len(pixels), differing=differing, share=round(differing / max(len(pixels), 1), 4),
                        failure=defense.failure, seconds=round(seconds, 2))


def _judge_serving(report: ValidationReport, probe: ServingProbe, refuse_stateful: bool) -> None:
    """A serving entry point that does not answer fails the dry run; answers that depend on
    order or history are flagged, or fail it where the round refuses them: the query track's
    scores assume they do not."""
    if probe.failure:
        report.problems.append(f"the served defense (serving_entry_point) failed: {probe.failure}")
        report.passed = False
    elif probe.differing:
        said = (f"the served defense answered {probe.differing} of {probe.images} images differently when asked again, "
                "in another order or in one batch: it must be deterministic and stateless")
        if refuse_stateful:
            report.problems.append(f"{said} (this round refuses stateful served defenses)")
            report.passed = False
        else:
            report.notes.append(said)
