"""``arena submit``, ``arena submissions``, ``arena baseline``, ``arena disqualify``: a submission's life
from upload to its place in the tables."""

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text
from sqlalchemy import select

from arena import actions, db
from arena.callers import ORGANIZER
from arena.cli.common import (
    Commands,
    DatasetOption,
    InTheForeground,
    app,
    console,
    database,
    print_rows,
    submission_id_named,
    submission_named,
)
from arena.execution import checking
from arena.models import Submission, SubmissionStatus
from arena.sandbox import pinning, registry

submissions_app = Commands(help="List and inspect submissions.", no_args_is_help=True)


@app.command()
def submit(
    archive: Annotated[Path, typer.Argument(help="A .zip, .tar or .tar.gz holding metadata.json and the code.")],
    team: Annotated[str, typer.Option(help="The team that owns the submission.")],
    name: Annotated[Optional[str], typer.Option(help="Submission name (default: the archive's name).")] = None,
    round_name: Annotated[Optional[str], typer.Option("--round", help="Round to enter (default: the one open now).")] = None,
    description: Annotated[Optional[str], typer.Option(help="What the submission is, shown on its page.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the dry run (run here, or by the workers with a broker) "
                                            "and print its report; --no-wait returns once it is queued.")] = True,
) -> None:
    """Take a submission into a round (safe unpacking, metadata check, dedup, deadline and
    quota), then its dry run on one batch: here, or on the workers with a broker."""
    submission = actions.upload(database(), ORGANIZER, nullcontext(archive), name, team, round_name,
                                description=description)
    if not wait:
        console.print(f"{submission.name}: queued for its dry run (`arena run` or a worker checks it; "
                      f"`arena submissions show {submission.name}` follows it)", highlight=False)
        return
    with console.status("dry run on the sample batch..."):
        submission = checking.await_check(database(), submission.id)
    _print_submission(submission)
    if submission.status is not SubmissionStatus.ACCEPTED:
        raise typer.Exit(1)


def _print_submission(submission: Submission) -> None:
    colour = {SubmissionStatus.ACCEPTED: "green", SubmissionStatus.QUEUED: "yellow"}.get(submission.status, "red")
    console.print(f"{submission.name} ({submission.kind.value}, team {submission.team.name}): "
                  f"[{colour}]{submission.shown_status}[/]")
    report = submission.validation_report or {}
    if report:
        console.print(f"  dry run: {report['images']} images in {report['seconds']} s (limit {report['time_limit']} s), exit code {report['exit_code']}")
    for problem in report.get("problems", []):
        console.print(f"  - {problem}", highlight=False)
    for note in report.get("notes", []):
        console.print(f"  [dim]note: {note}[/]", highlight=False)
    if probe := report.get("determinism"):
        flag = "[yellow]non-deterministic[/]" if probe["differing"] else "deterministic"
        console.print(f"  determinism probe: {flag}, {probe['differing']} of {probe['images']} images differed "
                      f"when the batch ran again ({probe['seconds']} s more)")
    if serving := report.get("serving"):
        flag = "[red]failed[/]" if serving["failure"] else "[yellow]stateful or non-deterministic[/]" \
            if serving["differing"] else "deterministic and stateless"
        console.print(f"  served: {flag}, {serving['differing']} of {serving['images']} images answered differently "
                      f"one by one, in reverse and in one query ({serving['seconds']} s)")
    for field, (tag, pinned) in submission.images.items():
        console.print(f"  {field}: {tag}\n    pinned to {pinned or 'nothing yet (pinned by its first run)'}", highlight=False)
    if report and not report["passed"] and report.get("log_tail"):
        console.print("  log tail:\n" + report["log_tail"][-1500:], highlight=False)


@submissions_app.command("list")
def submissions_list() -> None:
    """List submissions with their kind, team and status."""
    with db.transaction(database()) as session:
        rows = [[str(s.id), s.name, s.kind.value.replace("_", " "), s.team.name, s.shown_status,
                 _nondeterministic(s.nondeterministic_share), s.reason or ""]
                for s in session.scalars(select(Submission).order_by(Submission.id))]
    print_rows(["Id", "Submission", "Kind", "Team", "Status", "Non-deterministic", "Reason"], rows)


def _nondeterministic(share: float | None) -> str:
    return f"{share:.0%} of images" if share else ""


@submissions_app.command("images")
def submissions_images() -> None:
    """Check every accepted submission's pinned images against what their tags name on this
    engine now; exit code 1 when a tag has moved (runs keep the pinned image: `arena
    submissions repin NAME` takes the new one and re-runs the submission)."""
    with db.transaction(database()) as session:
        accepted = session.scalars(select(Submission).where(Submission.status == SubmissionStatus.ACCEPTED)
                                   .order_by(Submission.id))
        checks = [(s.name, check) for s in accepted for check in pinning.check(s.images)]
    rows = [[name, check.field, check.tag, _short(check.pinned), _short(check.current),
             Text(check.state.value, style="red" if check.state is pinning.PinState.DRIFTED else "")]
            for name, check in checks]
    print_rows(["Submission", "Field", "Tag", "Pinned", "Tag now", "State"], rows, whole={"Pinned", "Tag now", "State"})
    registries = sorted({registry.registry_of(c.pinned) for _n, c in checks
                         if c.pinned and registry.is_reference(c.pinned)})
    if registries:
        console.print(f"pinned by their digest in the registry {', '.join(registries)} (under each tag's repository)")
    drifted = sorted({name for name, check in checks if check.state is pinning.PinState.DRIFTED})
    if drifted:
        console.print(f"[red]tags moved since pinning:[/] {', '.join(drifted)}: they still run their pinned images")
        raise typer.Exit(1)


def _short(pin: str | None) -> str:
    """A pin as docker shows it, to fit the table: an image id's first 12 hex digits, a
    registry digest as ``sha256:`` and its first 12 (the registries are said below it)."""
    if not pin:
        return ""
    short = pinning.short(pin).rpartition("@")[2]
    return short if registry.is_reference(pin) else short.removeprefix("sha256:")


@submissions_app.command("repin")
def submissions_repin(
    name: Annotated[str, typer.Argument(help="Submission name.")],
    dataset: DatasetOption = None,
) -> None:
    """Pin a submission to the images its tags name now: dry run and determinism probe with
    them, then its results are forgotten and it runs again (nothing changes if the dry run fails)."""
    submission_id = submission_id_named(name)
    console.print("dry run with the new image...")
    runner = InTheForeground(before=lambda: _say_pinned(submission_id))
    actions.repin(database(), runner, submission_id, dataset)


def _say_pinned(submission_id: int) -> None:
    with db.transaction(database()) as session:
        submission = session.get(Submission, submission_id)
        console.print(f"{submission.name} is pinned to {', '.join(submission.pins.values())}; its results are "
                      "forgotten", highlight=False)


@submissions_app.command("show")
def submissions_show(name: Annotated[str, typer.Argument(help="Submission name.")]) -> None:
    """Show a submission's status and its dry-run report."""
    with db.transaction(database()) as session:
        _print_submission(submission_named(session, name))


@app.command()
def disqualify(
    name: Annotated[str, typer.Argument(help="Submission name.")],
    reason: Annotated[str, typer.Option(help="Why; shown on the submission's page.")],
) -> None:
    """Take a submission out of every table and of planning (its stored results are kept)."""
    actions.disqualify(database(), submission_id_named(name), reason)
    console.print(f"{name} is disqualified: {reason}")


@app.command()
def baseline(
    name: Annotated[str, typer.Argument(help="Submission name.")],
    off: Annotated[bool, typer.Option("--off", help="Make it an ordinary entry again.")] = False,
) -> None:
    """Mark a submission as an organizers' baseline: shown apart and, unless the round ranks them, unranked."""
    actions.mark_baseline(database(), submission_id_named(name), not off)
    console.print(f"{name} is {'an ordinary entry' if off else 'a baseline'}")
