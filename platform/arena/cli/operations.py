"""``arena backup`` and ``arena restore``: consistent snapshots of an installation, and an
installation brought back from one (docs/operations.md)."""

from pathlib import Path
from typing import Annotated

import typer

from arena.cli.common import app, console, database, settings, steps_with_progress
from arena.operations.backup import backup as take_snapshot
from arena.operations.backup import describe
from arena.operations.restore import restore as restore_snapshot


@app.command()
def backup(
    destination: Annotated[Path, typer.Argument(help="The backup folder: made when missing, or one that holds "
                                                "earlier snapshots (only what they lack is copied).")],
) -> None:
    """Take a consistent snapshot of this installation (database, stored images, submissions'
    code, kept bundles, the naming key) while runs and uploads go on, into DESTINATION/snapshots/,
    with a manifest of counts and hashes written last. Into a folder that holds earlier
    snapshots, only the files they lack are copied: run it every night into the same folder."""
    own = database()
    with steps_with_progress() as progress:
        snapshot = take_snapshot(own, destination, progress)
    console.print(describe(snapshot), highlight=False)


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A backup folder (its newest finished snapshot) or one snapshot "
                                           "folder in it (DEST/snapshots/NAME).")],
) -> None:
    """Bring a snapshot back into this installation, which must be empty (a fresh
    ARENA_DATA_DIR, and an empty database where ARENA_DATABASE_URL is set): every file is
    checked against its hash before anything is written, and the schema is then upgraded
    to this Arena's."""
    with steps_with_progress() as progress:
        restored = restore_snapshot(settings(), source, progress)
    console.print(restored.describe(), highlight=False)
