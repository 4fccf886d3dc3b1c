"""``arena run``, ``arena rerun``, ``arena worker``: computing the missing jobs, here or on Celery workers."""

from typing import Annotated, Optional

import typer

from arena import actions
from arena.cli.common import DatasetOption, InTheForeground, app, database, run_with_progress, submission_id_named
from arena.errors import ArenaError


@app.command()
def run(
    dataset: DatasetOption = None,
    wait: Annotated[bool, typer.Option(help="With a broker: follow the workers until done, or only queue.")] = True,
) -> None:
    """Run every job that is missing: new submissions get only their row or column. In-process, or
    on Celery workers when ARENA_BROKER_URL is set."""
    summary = run_with_progress(dataset, wait)
    if summary.platform_errors:
        raise typer.Exit(2)


@app.command()
def rerun(
    submission: Annotated[Optional[str], typer.Option(help="Recompute only this submission's jobs.")] = None,
    dataset: DatasetOption = None,
) -> None:
    """Forget stored results (of one submission, or all) and compute them again; refused while
    another runner (`arena run`, the web's, a worker) holds a job of the dataset."""
    runner = InTheForeground()
    actions.rerun(database(), runner, None if submission is None else submission_id_named(submission), dataset)
    if runner.summary is not None and runner.summary.platform_errors:
        raise typer.Exit(2)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Packs this worker runs at once (containers on this host).")] = 2,
    queues: Annotated[Optional[str], typer.Option(help="Queues to take work from (default: dryrun,cpu: uploads to check, then packs; gpu with --gpu).")] = None,
    gpu: Annotated[bool, typer.Option(help="This host has GPUs: give them to containers and run container_gpu images.")] = False,
) -> None:
    """Start a Celery worker that runs packs from ARENA_BROKER_URL on this host's Docker engine."""
    own = database()
    if not own.broker_url:
        raise ArenaError("set ARENA_BROKER_URL (for instance redis://localhost:6379/0) to start a worker")
    if gpu:  # this worker's own copy: nothing else sees the change
        own = own.model_copy(update={"sandbox": own.sandbox.model_copy(update={"gpu": True})})
    from arena.execution.broker import serve  # imports Celery only where it is used

    serve(own, concurrency, (queues or ("gpu" if gpu else "dryrun,cpu")).split(","))
