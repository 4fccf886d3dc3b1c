"""``arena teams``: teams, their members and web tokens."""

from typing import Annotated, Optional

import typer

from arena import actions, db
from arena.admin import teams
from arena.cli.common import Commands, console, database, print_rows

teams_app = Commands(help="Teams and their web tokens.", no_args_is_help=True)


@teams_app.command("token")
def teams_token(name: Annotated[str, typer.Argument(help="Team name (created if new).")]) -> None:
    """Issue a team's web token (shown once; the team's earlier token stops working)."""
    issued = actions.issue_team_token(database(), name)
    console.print(f"token for team {issued['team']!r}: [bold]{issued['token']}[/]", highlight=False)


@teams_app.command("member")
def teams_member(
    team: Annotated[str, typer.Argument(help="Team name (created if new).")],
    member: Annotated[str, typer.Argument(help="The member's name.")],
    contact: Annotated[Optional[str], typer.Option(help="E-mail or other contact, shown to organizers.")] = None,
) -> None:
    """Add a member to a team."""
    with db.transaction(database()) as session:
        teams.add_member(session, team, member, contact)
    console.print(f"{member} is in team {team!r}")


@teams_app.command("list")
def teams_list() -> None:
    """Teams with their members and submissions."""
    with db.transaction(database()) as session:
        rows = [[team, members, str(count)] for team, members, count in teams.overview(session)]
    print_rows(["Team", "Members", "Submissions"], rows)
