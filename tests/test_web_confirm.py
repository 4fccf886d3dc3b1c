"""Destructive actions ask first, and pages say what people need (#14 parts 4-6), without
containers or a browser (TestClient): a fake defense stands in for the container, as in
tests/test_tallies.py, so the results, the runs and the standings are real rows.

Before: re-run, disqualify and "issue a token" acted on one click; a mistyped team name made
a team; "Run the missing jobs" stayed enabled with nothing missing; the matrix did not say
which attacks were targeted and had no colour scale; the submission page had one row per job
of a pack and neither score nor rank."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from arena.admin import teams
from arena.db import transaction
from arena.execution import pack_run
from arena.models import (
    Classification,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Team,
)
from arena.web.app import create_app
from conftest import make_settings
from factories import add_submission, attacked, defense_packs, fake_defenses, synth_dataset
from test_web_actions import FakeRunner

TOKEN = "organizer-secret"
EPSILONS = [2, 8]


def scored_tournament(tmp_path, monkeypatch, epsilons: list[int] = EPSILONS) -> tuple:
    """Attacks A and T (targeted), defenses D and E, every job done through ``run_pack`` (one
    container run per defense, a fake defense in it); team red has a token. The settings and
    the submissions' ids by name."""
    settings = make_settings(tmp_path / "arena", organizer_token=TOKEN, epsilons=epsilons)
    dataset = synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        ids = attacked(session, dataset, epsilons, owner="red")
        teams.issue_token(session, "red")
    fake_defenses(monkeypatch, settings)
    for pack in defense_packs(settings):
        assert pack_run.run_pack(settings, pack).finished == len(pack.job_ids)
    return settings, ids


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The scored tournament, the organizer logged in; the runner a fake that forgets as asked."""
    settings, ids = scored_tournament(tmp_path, monkeypatch)
    client = TestClient(create_app(settings))
    client.app.state.runner = FakeRunner()
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    return client, settings, ids


def _answers(settings, defense_id: int) -> int:
    with transaction(settings) as session:
        return session.scalar(select(func.count()).select_from(Classification).where(Classification.defense_id == defense_id))


def _token_hash(settings, name: str) -> str | None:
    with transaction(settings) as session:
        return session.scalar(select(Team.token_sha256).where(Team.name == name))


def _confirm_form(page: str) -> tuple[str, dict]:
    """The confirm page's form: where it posts and its hidden fields."""
    form = re.search(r'<form method="post" action="([^"]+)"[^>]*id="confirm-form">(.*?)</form>', page, re.S)
    return form.group(1), dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))


def _cancel(page: str) -> str:
    return re.search(r'id="cancel" href="([^"]+)"', page).group(1)


def test_a_rerun_asks_first_naming_what_is_lost_cancel_keeps_confirm_forgets(site):
    client, settings, ids = site
    defense = ids["D"]
    answers = _answers(settings, defense)
    assert answers > 0
    asked = client.post(f"/submissions/{defense}/rerun", data={"dataset": "synthetic"})
    assert asked.status_code == 200 and client.app.state.runner.started == []
    losses = re.search(r'id="losses">(.*?)</ul>', asked.text, re.S).group(1)
    assert f"This forgets {answers} results of D" in losses and f"{answers} answers it gave" in losses
    assert _answers(settings, defense) == answers  # asking forgot nothing

    cancel = client.get(_cancel(asked.text))  # Cancel: a link back, nothing posted
    assert cancel.status_code == 200 and "<h2>D" in cancel.text
    assert _answers(settings, defense) == answers and client.app.state.runner.started == []

    action, fields = _confirm_form(asked.text)
    assert fields == {"dataset": "synthetic", "confirmed": "true"}
    done = client.post(action, data=fields, follow_redirects=False)
    assert done.status_code == 303 and client.app.state.runner.started == ["synthetic"]
    assert _answers(settings, defense) == 0


def test_an_attacks_rerun_names_its_images_and_the_answers_on_them(site):
    client, _, ids = site
    losses = re.search(r'id="losses">(.*?)</ul>', client.post(f"/submissions/{ids['A']}/rerun").text, re.S).group(1)
    # 2 batches x 2 ε = 4 attack jobs, 4 images x 2 ε adversarial images, 2 defenses answering each
    assert "4 finished jobs of 4, 8 adversarial images, 16 answers the defenses gave on them" in losses


def test_disqualify_asks_first_and_cancel_keeps_it_accepted(site):
    client, settings, ids = site
    asked = client.post(f"/submissions/{ids['E']}/disqualify", data={"reason": "copied D"})
    assert asked.status_code == 200 and "leaves every leaderboard" in asked.text and "“copied D”" in asked.text
    assert client.get(_cancel(asked.text)).status_code == 200
    with transaction(settings) as session:
        assert session.get(Submission, ids["E"]).status is SubmissionStatus.ACCEPTED
    action, fields = _confirm_form(asked.text)
    assert client.post(action, data=fields, follow_redirects=False).status_code == 303
    with transaction(settings) as session:
        submission = session.get(Submission, ids["E"])
        assert submission.status is SubmissionStatus.DISQUALIFIED and submission.reason == "copied D"


def test_replacing_a_team_token_asks_first_and_cancel_keeps_the_old_one(site):
    client, settings, _ = site
    old = _token_hash(settings, "red")
    asked = client.post("/organizer/teams", data={"team": "red"})
    assert asked.status_code == 200 and "The current token of red stops working" in asked.text
    assert _token_hash(settings, "red") == old
    assert _cancel(asked.text) == "/organizer" and client.get("/organizer").status_code == 200
    assert _token_hash(settings, "red") == old
    action, fields = _confirm_form(asked.text)
    issued = client.post(action, data=fields)
    assert issued.status_code == 201 and 'id="token"' in issued.text
    assert _token_hash(settings, "red") not in (None, old)


def test_an_unknown_team_is_refused_unless_creating_it_is_asked(site):
    client, settings, _ = site
    refused = client.post("/organizer/teams", data={"team": "rde"})
    assert refused.status_code == 404 and "no team named “rde”" in refused.text and "create the team" in refused.text
    assert _token_hash(settings, "rde") is None
    with transaction(settings) as session:
        assert session.scalar(select(Team).where(Team.name == "rde")) is None
    created = client.post("/organizer/teams", data={"team": "green", "create": "true"})  # no old token: no question
    assert created.status_code == 201 and _token_hash(settings, "green")
    api = client.post("/api/teams/rde/token?create=false", headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.status_code == 404


def test_the_run_button_is_disabled_when_nothing_is_missing(site):
    client, settings, ids = site
    page = client.get("/organizer").text
    assert re.search(r'<button id="run-button" disabled', page) and "Nothing is missing" in page
    with transaction(settings) as session:
        add_submission(session, "F", SubmissionKind.DEFENSE, owner="blue")
    page = client.get("/organizer").text
    assert re.search(r'<button id="run-button" >', page) and "Nothing is missing" not in page
    assert "jobs to run" in page


def test_the_matrix_tags_targeted_rows_and_has_a_colour_scale(site):
    client, _, _ = site
    page = client.get("/matrix").text
    rows = dict(re.findall(r'<th class="row"[^>]*><a [^>]*>([^<]+)</a><span class="tag (\w+)"', page))
    assert rows == {"A": "untargeted", "T": "targeted"}
    scale = re.search(r'id="heat-scale"(.*?)</div>', page, re.S).group(1)
    steps = re.findall(r'<span class="step" style="([^"]+)">(\d*)</span>', scale)
    assert [label for _, label in steps] == [str(10 * k) for k in range(11)] + [""]
    assert steps[0][0] != steps[10][0] and "no answers yet" in scale


def test_the_submission_page_groups_a_container_run_and_shows_score_and_rank(site):
    client, settings, ids = site
    page = client.get(f"/submissions/{ids['D']}").text
    runs = re.search(r'<table class="sortable" id="runs">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", runs, re.S)
    assert len(rows) == 1  # one container run did all of D's jobs
    cells = re.findall(r"<td>(.*?)</td>", rows[0], re.S)
    packs = {len(p.job_ids) for p in defense_packs(settings)}
    assert cells[1].strip() == str(packs.pop())
    # D and E are both team red's defenses: E (the latest) counts, so D's page places it among every entry
    assert ids["D"] not in {r["id"] for r in client.get("/api/leaderboards/defense").json()}
    board = client.get("/api/leaderboards/defense?scope=all").json()
    mine = next(r for r in board if r["id"] == ids["D"])
    assert re.search(rf'id="score">{mine["score"]}\b', page)
    assert f'id="rank">{mine["rank"]} of {len(board)} in' in page and "defenses</a>" in page
    assert "among every entry: not the one that counts for team red" in page
