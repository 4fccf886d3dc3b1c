"""``arena db`` and ``arena scores``: the schema, and the tallies scores are computed from."""

from arena import db
from arena.cli.common import Commands, console, database, settings
from arena.results import tallies

db_app = Commands(help="The database schema.", no_args_is_help=True)


scores_app = Commands(help="The tallies that scores are computed from.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the latest revision: the one command that changes it."""
    db.upgrade(settings())
    console.print(f"database at {settings().resolved_database_url} is up to date")


@scores_app.command("rebuild")
def scores_rebuild() -> None:
    """Recompute every tally from the stored per-image results (they are kept up to date as
    results land; this is the check and the repair)."""
    with db.transaction(database()) as session:
        cells = tallies.rebuild(session)
    console.print(f"tallies rebuilt from the stored results: {cells} matrix cells")
