"""``arena web``: serving the web application."""

from typing import Annotated

import typer

from arena.cli.common import app, console, settings


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the web application: leaderboards, error matrix, submission and organizer pages, REST API."""
    from arena.web.app import create_app
    from arena.web.serving import server

    application = create_app(settings())
    if settings().organizer_token is None:
        console.print(f"organizer credential for this run (set ARENA_ORGANIZER_TOKEN to choose it): "
                      f"[bold]{application.state.organizer_token}[/]", highlight=False)
    console.print(f"serving on http://{host}:{port}/ (API docs at /docs); visitors reach it as "
                  f"{', '.join(settings().allowed_hosts)} (ARENA_ALLOWED_HOSTS)", highlight=False)
    server(application, host, port).run()
