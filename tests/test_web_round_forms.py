"""Organizers create rounds and change their window, quotas, visibility and public data on
/rounds (#30, finding 11), through the same actions as `arena round create` and `round set`
(``actions.create_round``, ``actions.update_round``); TestClient on real SQLite.

Before: only the command line could do it."""

import re
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.cli import app as cli_app
from arena.competition import rounds
from arena.config import get_settings
from arena.db import transaction
from arena.models import Round, Visibility
from arena.web.app import create_app
from conftest import make_settings
from factories import red_and_blue, synth_dataset

TOKEN = "organizer-secret"
ORGANIZER = {"Authorization": f"Bearer {TOKEN}"}
SAME_ORIGIN = {"Origin": "http://testserver", "Referer": "http://testserver/rounds"}
FINAL = {"name": "final", "dataset": "final-images", "eps": "8, 16", "eps_schedule": "round_robin",
         "seconds_per_image": "3", "opens": "2030-01-01T00:00", "closes": "2030-01-15T12:30", "hidden": "true",
         "daily_quota": "2", "total_quota": "", "public_data": ""}


@pytest.fixture
def client(tmp_path):
    """Round "synthetic" with red's attack and blue's defenses; dataset "final-images" with no round yet."""
    settings = make_settings(tmp_path / "arena", organizer_token=TOKEN, epsilons=[4, 16])
    red_and_blue(settings)
    synth_dataset(settings, 2, batch_size=2, name="final-images")
    with transaction(settings) as session:  # the factory opens a round on it: take it away, as `--round ""` does
        session.delete(rounds.find(session, "final-images"))
    return TestClient(create_app(settings))


def _organizer(client: TestClient) -> TestClient:
    admin = TestClient(client.app, headers=SAME_ORIGIN)  # a browser names the origin of its forms
    assert admin.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    return admin


def _team(client: TestClient, name: str) -> TestClient:
    token = client.post(f"/api/teams/{name}/token", headers=ORGANIZER).json()["token"]
    team = TestClient(client.app, headers=SAME_ORIGIN)
    assert team.post("/login", data={"token": token}, follow_redirects=False).status_code == 303
    return team


def _rounds(client: TestClient) -> list[str]:
    with transaction(client.app.state.settings) as session:
        return list(session.scalars(select(Round.name).order_by(Round.id)))


def _notice(page: str) -> str:
    return re.search(r'id="rounds-notice">(.*?)</p>', page, re.S).group(1)


def test_an_organizer_creates_a_round_and_changes_it_on_the_rounds_page(client, monkeypatch):
    admin = _organizer(client)
    page = admin.get("/rounds").text
    assert 'id="round-create"' in page and "<option>final-images</option>" in page
    assert "<option>synthetic</option>" not in page.split('id="round-create"')[1]  # a dataset with a round is not offered
    assert "(UTC" in page and 'type="datetime-local" name="closes"' in page

    created = admin.post("/organizer/rounds", data=FINAL, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == "/rounds?created=final"
    notice = _notice(admin.get(created.headers["location"]).text)
    assert notice.startswith("Round final created on dataset final-images: ε 8, 16; uploads not open yet "
                             "(opens 2030-01-01 00:00 UTC, closes 2030-01-15 12:30 UTC); quota 2 a day")
    assert "leaderboards hidden" in notice and "data not public" in notice

    changed = admin.post("/organizer/rounds/final/set", data={
        "opens": "2030-01-02T08:00", "closes": "2030-02-01T00:00", "daily_quota": "5", "total_quota": "9",
        "visibility": "live", "public_data": "true", "refuse_stateful_defenses": "true"})
    assert changed.status_code == 200 and str(changed.url).endswith("/rounds?changed=final")
    assert _notice(changed.text) == ("Round final changed: ε 8, 16; uploads not open yet (opens 2030-01-02 08:00 UTC, "
                                     "closes 2030-02-01 00:00 UTC); quota 5 a day, 9 in all; leaderboards live; "
                                     "baselines unranked; data public; stateful served defenses refused.")
    assert 'name="refuse_stateful_defenses" value="true" checked' in changed.text  # the form shows the setting
    kept = admin.post("/organizer/rounds/final/set", data={"opens": "", "closes": "", "daily_quota": "",
                                                            "total_quota": "", "visibility": "live", "public_data": "true"})
    assert "quota 5 a day, 9 in all" in _notice(kept.text)  # a blank field keeps the setting, as the CLI's options

    with transaction(client.app.state.settings) as session:
        final = rounds.find(session, "final")
        assert final.epsilons == [8, 16] and final.eps_schedule.value == "round_robin" and final.seconds_per_image == 3
        assert rounds.window(final).opens_at == datetime(2030, 1, 2, 8, tzinfo=timezone.utc)
        assert rounds.window(final).closes_at == datetime(2030, 2, 1, tzinfo=timezone.utc)
        assert (final.daily_quota, final.total_quota, final.visibility, final.data_public) == (5, 9, Visibility.LIVE, True)
    assert "final" in client.get("/data").text  # its images are public now

    monkeypatch.setenv("ARENA_DATA_DIR", str(client.app.state.settings.data_dir))  # the CLI sees the same rounds
    get_settings.cache_clear()
    try:
        listing = CliRunner().invoke(cli_app, ["round", "list"], terminal_width=250)
        refused = CliRunner().invoke(cli_app, ["round", "set", "final", "--refuse-stateful-defenses"])
    finally:
        get_settings.cache_clear()
    assert listing.exit_code == 0, listing.output
    assert refused.exit_code == 0, refused.output
    with transaction(client.app.state.settings) as session:
        assert rounds.find(session, "final").refuse_stateful_defenses  # the form's unticked box had turned it off
    row = next(line for line in listing.output.splitlines() if "final-images" in line)
    assert "not open yet" in row and "5 a day, 9" in row and "live" in row  # the table wraps "in all"


def test_teams_and_the_public_may_not_create_or_change_rounds(client):
    red = _team(client, "red")
    anonymous = TestClient(client.app, headers=SAME_ORIGIN)
    for visitor, status in ((red, 403), (anonymous, 401)):
        assert visitor.post("/organizer/rounds", data=FINAL).status_code == status
        assert visitor.post("/organizer/rounds/synthetic/set", data={"daily_quota": "1"}).status_code == status
        assert 'id="round-create"' not in visitor.get("/rounds").text
    assert _rounds(client) == ["synthetic"]
    with transaction(client.app.state.settings) as session:
        assert rounds.find(session, "synthetic").daily_quota is None


@pytest.mark.parametrize(("fields", "named"), [
    ({"eps": "4,eight"}, "ε takes integers separated by commas, e.g. 2,4,8,16; got &#39;4,eight&#39;"),
    ({"eps": "4,300"}, "epsilons must be one or more values in 0..255"),
    ({"closes": "2029-12-31T00:00"}, "a round must close after it opens"),
    ({"opens": "tomorrow"}, "opens must be a date and time in UTC like 2026-12-01T12:00"),
    ({"daily_quota": "0"}, "the daily quota must be at least 1"),
    ({"total_quota": "many"}, "total quota must be a whole number"),
])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(client, fields, named):
    admin = _organizer(client)
    refused = admin.post("/organizer/rounds", data={**FINAL, **fields})
    assert refused.status_code == 422 and named in refused.text
    assert 'href="/rounds" id="error-back">Back to the form' in refused.text  # the visitor keeps the form
    assert _rounds(client) == ["synthetic"]


def test_a_change_with_a_close_before_the_open_is_refused_and_nothing_changes(client):
    admin = _organizer(client)
    refused = admin.post("/organizer/rounds/synthetic/set", data={
        "opens": "2030-02-01T00:00", "closes": "2030-01-01T00:00", "daily_quota": "3", "visibility": "hidden"})
    assert refused.status_code == 422 and "a round must close after it opens" in refused.text
    with transaction(client.app.state.settings) as session:
        synthetic = rounds.find(session, "synthetic")
        assert (synthetic.opens_at, synthetic.closes_at, synthetic.daily_quota) == (None, None, None)
        assert synthetic.visibility is Visibility.LIVE
        assert session.scalar(select(func.count()).select_from(Round)) == 1


def _quotas(client: TestClient, name: str) -> tuple:
    with transaction(client.app.state.settings) as session:
        round_ = rounds.find(session, name)
        return round_.daily_quota, round_.total_quota, round_.rank_baselines


def test_an_organizer_takes_a_quota_away_and_ranks_baselines_on_the_rounds_page(client):
    """A blank quota keeps it, as the CLI's options do; so taking one away needed its own way:
    a "no limit" box, shown where there is a quota to take away. The baselines' rank was
    CLI-only (``--rank-baselines``)."""
    admin = _organizer(client)
    kept = {"visibility": "live"}
    admin.post("/organizer/rounds/synthetic/set", data={**kept, "daily_quota": "3", "total_quota": "7"})
    assert _quotas(client, "synthetic") == (3, 7, False)
    form = admin.get("/rounds").text.split('action="/organizer/rounds/synthetic/set"')[1].split("</form>")[0]
    assert 'name="no_daily_quota"' in form and 'name="no_total_quota"' in form
    assert '<input type="checkbox" name="rank_baselines" value="true" >' in form

    changed = admin.post("/organizer/rounds/synthetic/set", data={
        **kept, "daily_quota": "", "no_daily_quota": "true", "total_quota": "", "rank_baselines": "true"})
    assert "quota 7 in all; leaderboards live; baselines ranked" in _notice(changed.text)
    assert _quotas(client, "synthetic") == (None, 7, True)
    form = changed.text.split('action="/organizer/rounds/synthetic/set"')[1].split("</form>")[0]
    assert 'name="no_daily_quota"' not in form and 'name="rank_baselines" value="true" checked' in form

    both = admin.post("/organizer/rounds/synthetic/set", data={**kept, "total_quota": "4", "no_total_quota": "true"})
    assert both.status_code == 422 and "give a total quota or remove it (no limit), not both" in both.text
    assert _quotas(client, "synthetic") == (None, 7, True)
    admin.post("/organizer/rounds/synthetic/set", data={**kept, "no_total_quota": "true"})
    assert _quotas(client, "synthetic") == (None, None, False)  # the baselines' box unticked: unranked again
    assert client.get("/api/rounds").json()[0]["rank_baselines"] is False


def test_the_command_line_takes_a_quota_away_as_the_form_does(client, monkeypatch):
    monkeypatch.setenv("ARENA_DATA_DIR", str(client.app.state.settings.data_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        assert runner.invoke(cli_app, ["round", "set", "synthetic", "--daily-quota", "2", "--total-quota", "5"]).exit_code == 0
        taken = runner.invoke(cli_app, ["round", "set", "synthetic", "--no-daily-quota", "--rank-baselines"])
        assert taken.exit_code == 0, taken.output
        both = runner.invoke(cli_app, ["round", "set", "synthetic", "--total-quota", "3", "--no-total-quota"])
    finally:
        get_settings.cache_clear()
    assert both.exit_code == 1 and "not both" in both.output
    assert _quotas(client, "synthetic") == (None, 5, True)
