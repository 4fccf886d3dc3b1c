"""Team names: one team whatever the case or width a name is typed in, and no name that
reads as another, turns the page's text around, or breaks a team's page."""

import pytest
import sqlalchemy as sa
from alembic import command

from arena import db
from arena.admin import teams
from arena.admin.teams import TeamError
from arena.config import Settings
from arena.db import transaction
from arena.errors import ConflictError


def test_a_name_is_one_team_whatever_its_case_or_width(settings):
    with transaction(settings) as session:
        token = teams.register(session, "Bravo", "Ada", None)
        for typed in ("BRAVO", "bravo", " bravo ", "ｂｒａｖｏ"):  # the last one full-width
            assert teams.find(session, typed).name == "Bravo"
            with pytest.raises(ConflictError, match="a team named 'Bravo' exists"):
                teams.register(session, typed, "Eve", None)
        assert teams.team_for_token(session, token).name == "Bravo"
        assert teams.find_or_create(session, "ＣＨＡＲＬＩＥ").name == "CHARLIE"  # stored normalised


@pytest.mark.parametrize(("name", "why"), [
    ("bravo\u200b", "an invisible or direction-changing character (U+200B)"),
    ("evil\u202eoc.exe", "an invisible or direction-changing character (U+202E)"),
    ("tab\there", "a control character (U+0009)"),
    ("../../organizer", "a slash (U+002F)"),
    ("back\\slash", "a backslash (U+005C)"),
    ("   ", "a team name must be 1 to 200 characters"),
    ("x" * 201, "a team name must be 1 to 200 characters"),
], ids=["zero-width-space", "right-to-left-override", "tab", "slash", "backslash", "blank", "too-long"])
def test_a_name_that_cannot_be_a_team_s_is_refused_saying_why(settings, name, why):
    with transaction(settings) as session:
        with pytest.raises(TeamError) as refused:
            teams.register(session, name, "Eve", None)
        assert str(refused.value).endswith(why)
        assert teams.overview(session) == []


def test_teams_told_apart_by_case_alone_keep_working_after_the_migration(tmp_path):
    settings = Settings(data_dir=tmp_path / "arena")
    settings.data_dir.mkdir(parents=True)
    command.upgrade(db.alembic_config(settings), "0014")
    with db.get_engine(settings.resolved_database_url).begin() as connection:
        connection.execute(sa.text("INSERT INTO teams (id, name, created_at) VALUES "
                                   "(1, 'Bravo', CURRENT_TIMESTAMP), (2, 'bravo', CURRENT_TIMESTAMP)"))
    db.upgrade(settings)
    with db.get_engine(settings.resolved_database_url).begin() as connection:
        keys = connection.execute(sa.text("SELECT id, name_key FROM teams ORDER BY id")).all()
    assert keys == [(1, "bravo"), (2, "bravo#2")]
    with transaction(settings) as session:
        assert teams.find(session, "BRAVO").id == 1  # the older keeps the name
        with pytest.raises(ConflictError):
            teams.register(session, "BRAVO", "Eve", None)
