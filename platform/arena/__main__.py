"""``python -m arena`` is the ``arena`` command (used inside the app image)."""

from arena.cli import app

app()
