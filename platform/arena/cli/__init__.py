"""The ``arena`` command: thin wrappers that parse options, call the actions and the domain
modules, and print. One module per command group; ``common`` holds what they share (an
``ArenaError`` from any command is one red line and exit code 1, never a traceback)."""

from arena.cli import (  # noqa: F401  (their commands register on the app)
    database,
    datasets,
    hosts,
    images,
    operations,
    query,
    results,
    rounds,
    runs,
    submissions,
    teams,
    tools,
    web,
)
from arena.cli.common import app, console

app.add_typer(database.db_app, name="db")
app.add_typer(datasets.dataset_app, name="dataset")
app.add_typer(images.images_app, name="images")
app.add_typer(submissions.submissions_app, name="submissions")
app.add_typer(teams.teams_app, name="teams")
app.add_typer(database.scores_app, name="scores")
app.add_typer(rounds.round_app, name="round")
app.add_typer(hosts.hosts_app, name="hosts")
app.add_typer(query.query_app, name="query")

__all__ = ["app", "console"]
