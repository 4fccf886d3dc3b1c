"""``arena hosts``: the workers that take jobs, and draining one (organizers' view on the
hosts page, in a terminal)."""

from typing import Annotated

import typer

from arena import actions, db
from arena.cli.common import Commands, console, database, print_rows
from arena.execution import workers

hosts_app = Commands(help="The hosts and workers that take jobs.", no_args_is_help=True)
WorkerId = Annotated[int, typer.Argument(help="The worker's id (`arena hosts list`).")]


@hosts_app.command("list")
def hosts_list() -> None:
    """Every worker: its state, engine, what it takes and what it holds now."""
    settings = database()
    with db.transaction(settings) as session:
        seen = workers.overview(session, settings)
        rows = [[f"{v.worker.kind} #{v.worker.id}", f"{v.worker.host} ({v.worker.pid})", v.state.value,
                 f"{v.worker.engine_version or 'no engine'} {'/'.join(v.worker.runtimes)}",
                 f"{v.worker.concurrency} {','.join(v.worker.queues)}".strip(), str(len(v.running)),
                 v.worker.last_seen.strftime("%m-%d %H:%M:%S")] for v in seen.workers]
        overdue = len(seen.overdue)
    print_rows(["Worker", "Host (pid)", "State", "Engine", "Takes", "Holds", "Last seen"], rows)
    if overdue:
        console.print(f"[red]{overdue} running job(s) past their lease[/]: the next turn of any runner hands them on")


@hosts_app.command("drain")
def hosts_drain(worker: WorkerId, resume: Annotated[bool, typer.Option(help="Take work again instead.")] = False) -> None:
    """Stop a worker taking new work (it finishes what it runs), or with --resume let it take work again."""
    actions.drain(database(), worker, not resume)
    console.print(f"worker {worker} {'takes work again' if resume else 'is draining: it finishes what it runs'}")
