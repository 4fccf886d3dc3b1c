"""Re-pinning: a submission moved to the images its tags name now, and run again.

A tag that moves after intake is never followed (``sandbox.pinning``). When organizers do
want the new image (a team fixed its image, a base image was rebuilt), re-pinning takes
it in as intake would: the dry run and the determinism probe on the sample batch with the
new image, and only when it passes are the new pins, their report and flag stored and the
submission's results forgotten, in one transaction, so that every job runs again on the new
image. A failed dry run changes nothing; neither does a refused start of the web's run.
"""

from dataclasses import dataclass

from arena.competition import rounds
from arena.config import Settings
from arena.db import transaction
from arena.errors import ConflictError, InputError, NotFoundError
from arena.execution import planning
from arena.execution.checking import store_dry_run
from arena.intake.dry_run import ValidationReport, sample_batch, validate
from arena.models import Submission, SubmissionStatus
from arena.sandbox import pinning
from arena.sandbox.code import StoredSubmission, SubmissionCode


@dataclass(frozen=True)
class Repin:
    """A re-pin whose dry run passed, ready to be applied."""

    submission_id: int
    name: str
    pins: dict[str, str]
    report: ValidationReport


def prepare(settings: Settings, submission_id: int) -> Repin:
    """Pin the tags as they are now and dry-run the submission with them, under the epsilons,
    time limit and naming key of the round it was uploaded to, as intake did; refused when the pins
    would not change or the dry run fails, nothing being stored either way."""
    with transaction(settings) as session:
        submission = session.get(Submission, submission_id)
        if submission is None:
            raise NotFoundError(f"no submission with id {submission_id}")
        if submission.status is not SubmissionStatus.ACCEPTED:
            raise ConflictError(f"{submission.name} is {submission.status.value}: only accepted submissions are re-pinned")
        stored, images = StoredSubmission.of(submission), sample_batch(session)
        uploaded_to = rounds.entered_by_upload(session, submission)
        settings, naming_key = rounds.run_settings(settings, uploaded_to), rounds.naming_key(uploaded_to)
        refuse_stateful = uploaded_to.refuse_stateful_defenses
    name, old = stored.name, stored.pins
    code = SubmissionCode.stored(settings, stored, {})  # with an object store, a download: no transaction open
    pins = pinning.pin(stored.meta, settings.registry)
    if pins == old:
        raise ConflictError(f"{name} is pinned to the images its tags name now: nothing to re-pin "
                            "(a re-run runs it again on the same images)")
    report = validate(settings, code.pinned(pins), images, naming_key, refuse_stateful)
    if not report.passed:
        raise InputError(f"{name}: the dry run with the new image failed, nothing was changed: "
                         + ("; ".join(report.problems) or f"exit code {report.exit_code}"))
    return Repin(submission_id, name, pins, report)


def apply(settings: Settings, repin: Repin) -> None:
    """Store the new pins, report and flag, and forget the submission's results: together."""
    with transaction(settings) as session:
        submission = session.get(Submission, repin.submission_id)
        store_dry_run(settings, submission, repin.report, repin.pins)
        planning.forget(session, submission)
