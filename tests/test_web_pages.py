"""The pages as people use them, without containers or a browser (TestClient): blank form
fields are "not set", a bad field is a sentence on the error page, a fresh site says how to
begin, headers explain themselves, the API docs need no internet."""

import itertools
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from arena.admin import tournament
from arena.competition import rounds
from arena.data import logs
from arena.db import transaction
from arena.models import DryRun, JobStatus, SubmissionKind, utcnow
from arena.web.app import create_app
from conftest import make_settings
from factories import add_submission, synth_dataset

ORGANIZER = {"Authorization": "Bearer organizer-secret"}


@pytest.fixture
def client(tmp_path):
    settings = make_settings(tmp_path / "arena", organizer_token="organizer-secret", epsilons=[4, 16])
    synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        tournament.update(session, title="Spring Cup")
        add_submission(session, "red-attack", SubmissionKind.ATTACK, owner="red")
        add_submission(session, "blue-defense", SubmissionKind.DEFENSE, owner="blue")
    return TestClient(create_app(settings))


def _error(page: str) -> str:
    return re.search(r'id="error">(.*?)</p>', page, re.S).group(1)


@pytest.mark.parametrize(("value", "eps", "top_attacks", "top_defenses"),
                         list(itertools.product(["", "error"], ["", None], ["", "3"], ["", "2"])))
def test_blank_matrix_fields_are_not_set(client, value, eps, top_attacks, top_defenses):
    fields = {"dataset": "", "value": value, "eps": eps, "top_attacks": top_attacks, "top_defenses": top_defenses}
    query = "&".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    response = client.get(f"/matrix?{query}")
    assert response.status_code == 200, response.text
    assert 'id="heatmap"' in response.text


def test_blank_fields_on_the_results_filter_and_the_curves_are_not_set(client):
    response = client.get("/results?dataset=&attack_id=&defense_id=&eps=&offset=", headers=ORGANIZER)
    assert response.status_code == 200 and "Per-image results" in response.text
    assert client.get("/curves?dataset=&defense=").status_code == 200


@pytest.mark.parametrize(("query", "sentence"), [
    ("top_attacks=abc", "top attacks must be a whole number, not “abc”."),
    ("top_defenses=0", "top defenses must be at least 1, not “0”."),
    ("eps=300", "ε (eps) must be at most 255, not “300”."),
    ("value=score", "value must be one of"),
])
def test_a_bad_page_field_is_a_sentence_on_the_error_page(client, query, sentence):
    response = client.get(f"/matrix?{query}")
    assert response.status_code == 422 and "text/html" in response.headers["content-type"]
    assert sentence in _error(response.text).replace("&#39;", "'")
    assert "Input should be" not in response.text and "loc" not in response.text


def test_the_api_keeps_its_parameters_as_sent(client):
    response = client.get("/api/matrix?top_attacks=")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "top_attacks"]


def test_error_pages_show_the_tournament_title(client):
    response = client.get("/submissions/999")
    assert response.status_code == 404
    assert "<title>Error 404 · Spring Cup</title>" in response.text
    assert '<a class="brand" href="/">Spring Cup</a>' in response.text


def _header(page: str) -> str:
    """The page header's words: the nav and who is logged in."""
    header = re.search(r"<header>(.*?)</header>", page, re.S).group(1)
    return " ".join(re.sub(r"<[^>]+>", " ", header).split())


def test_an_error_page_keeps_the_visitor_logged_in_and_offers_a_way_back(client):
    """The 404, 422, 429 and 403 pages said "Log in" and dropped Upload from the nav for a
    logged-in team, said a bare number, and offered no way back to the form."""
    red = client.post("/api/teams/red/token", headers=ORGANIZER).json()["token"]
    assert client.post("/login", data={"token": red}, follow_redirects=False).status_code == 303
    missing = client.get("/submissions/999")
    assert missing.status_code == 404 and "<h2>404 · Not Found</h2>" in missing.text
    assert "Upload" in _header(missing.text) and "team red Log out" in _header(missing.text)
    assert "Log in" not in _header(missing.text) and 'href="/" id="error-back"' in missing.text
    refused = client.post("/upload", files={"archive": ("broken.tar.gz", b"not an archive")},
                          headers={"Referer": "http://testserver/upload"})
    assert refused.status_code == 422 and "team red Log out" in _header(refused.text)
    assert '<a href="/upload" id="error-back">Back to the form</a>' in refused.text
    elsewhere = client.post("/upload", files={"archive": ("broken.tar.gz", b"x")},
                            headers={"Referer": "https://elsewhere.example/upload", "Origin": "http://testserver"})
    assert elsewhere.status_code == 422 and "elsewhere.example" not in elsewhere.text


def test_a_submission_page_is_about_a_round_it_takes_part_in(tmp_path):
    """A dev-only entry's page showed "Jobs on final 0 of 4" (the newest dataset), and a
    rejected one a full bar "0 of 0 done"."""
    from sqlalchemy import delete, select

    from arena.models import Entry, Round, SubmissionStatus

    settings = make_settings(tmp_path / "arena", organizer_token="organizer-secret", epsilons=[4])
    synth_dataset(settings, 4, batch_size=2, name="dev")
    with transaction(settings) as session:
        dev_only = add_submission(session, "dev-only", SubmissionKind.ATTACK, owner="red").id
        rejected = add_submission(session, "broken", SubmissionKind.ATTACK, owner="red",
                                  status=SubmissionStatus.REJECTED).id
    synth_dataset(settings, 4, batch_size=2, name="final")  # newer; it enters every submission so far
    with transaction(settings) as session:
        final = session.scalar(select(Round.id).where(Round.name == "final"))
        session.execute(delete(Entry).where(Entry.round_id == final, Entry.submission_id == dev_only))
    client = TestClient(create_app(settings))
    page = client.get(f"/submissions/{dev_only}", headers=ORGANIZER).text
    assert "<h3>Jobs on dev</h3>" in page and 'id="submission-progress"' in page and "of 2 done" in page
    assert client.get(f"/api/submissions/{dev_only}", headers=ORGANIZER).json()["progress"]["expected"] == 2
    elsewhere = client.get(f"/submissions/{dev_only}?dataset=final", headers=ORGANIZER).text
    assert "None: it does not take part in the round on final." in elsewhere
    broken = client.get(f"/submissions/{rejected}", headers=ORGANIZER).text
    assert "None: it is rejected, and runs no jobs." in broken and "<progress" not in broken.split("Jobs on")[1]


def _query_pair(tmp_path, batch_size: int) -> tuple:
    """A round "dev" of four images with a query attack of team red and a defense of team
    blue: the settings, the app's client and the two submissions' ids."""
    settings = make_settings(tmp_path / "arena", organizer_token="organizer-secret", epsilons=[4])
    synth_dataset(settings, 4, batch_size=batch_size, name="dev")
    with transaction(settings) as session:
        boundary = add_submission(session, "boundary", SubmissionKind.QUERY_ATTACK, owner="red").id
        served = add_submission(session, "served", SubmissionKind.DEFENSE, owner="blue").id
    return settings, TestClient(create_app(settings)), boundary, served


def test_a_query_attack_s_page_counts_its_query_jobs_and_none_before_they_are_planned(tmp_path):
    """A query attack runs no batch-track jobs: its page showed a full bar "0 of 0 done"."""
    from sqlalchemy import select

    from arena.models import Batch, Dataset, QueryJob

    settings, client, boundary, served = _query_pair(tmp_path, batch_size=2)
    page = client.get(f"/submissions/{boundary}", headers=ORGANIZER).text
    assert "None planned yet: its query jobs" in page and "<progress" not in page.split("Jobs on")[1]
    with transaction(settings) as session:
        batches = session.scalars(select(Batch.id).join(Dataset).where(Dataset.name == "dev")).all()
        session.add_all(QueryJob(attack_id=boundary, defense_id=served, batch_id=b) for b in batches)
        session.flush()
        session.scalars(select(QueryJob)).first().status = JobStatus.DONE
    page = client.get(f"/submissions/{boundary}", headers=ORGANIZER).text
    assert "1 of 2 done" in page.split("Jobs on")[1]
    assert client.get(f"/api/submissions/{boundary}", headers=ORGANIZER).json()["progress"]["expected"] == 2


def test_every_page_names_an_icon_that_is_served(client):
    """Browsers asked for /favicon.ico on every page and got a 404."""
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in client.get("/rounds").text
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_a_fresh_site_shows_how_to_begin(tmp_path):
    fresh = TestClient(create_app(make_settings(tmp_path / "arena", organizer_token="organizer-secret")))
    for path, headers in [("/", {}), ("/matrix", {}), ("/curves", {}), ("/organizer", ORGANIZER)]:
        response = fresh.get(path, headers=headers)
        assert response.status_code == 200, path
        for command in ("arena db upgrade", "arena dataset import", "arena submit", "arena run"):
            assert command in response.text, (path, command)
    assert fresh.get("/?dataset=nope").status_code == 404  # a named dataset that does not exist is still a 404


def test_leaderboard_headers_explain_themselves_on_hover_and_below(client):
    page = client.get("/").text
    assert "normalised" not in page
    headers = re.findall(r'<th ([^>]*)>([^<]+?) <a class="explain" href="/evaluation#([\w-]+)"', page)
    titled = {text: attrs for attrs, text, _ in headers if 'title="' in attrs}
    explained = {anchor for _, _, anchor in headers}
    evaluation = client.get("/evaluation").text
    assert explained and all(f'id="{anchor}"' in evaluation for anchor in explained)  # every column links its explanation
    # The ε columns appear with the first results: tests/test_web_tournament.py checks theirs.
    for column in ("rank", "score", "normalized", "clean accuracy", "completion", "median s / 100 images"):
        assert column in titled, column
    assert "cells scored so far" in titled["normalized"] and "0 to 1" in titled["normalized"]  # its denominator
    assert "jobs on this dataset that have finished" in titled["completion"]
    for track in ("defense", "attack", "targeted_attack"):  # the same, visible, under each table (phones)
        notes = re.search(rf'<dl class="notes" id="notes-{track}">(.*?)</dl>', page, re.S).group(1)
        assert "normalized" in notes and "cells scored so far" in notes and "completion" in notes


def test_matrix_headers_explain_themselves(client):
    page = client.get("/matrix").text
    assert re.search(r'<th class="corner" title="Rows: attacks[^"]*at every ε', page)
    assert re.search(r'<th class="col" title="Defense ', page) and re.search(r'<th class="row" title="Attack ', page)
    assert 'id="matrix-notes"' in page and "±16/255" in page


def test_the_api_docs_are_served_by_the_app_and_linked(client):
    for path in ("/docs", "/redoc"):
        page = client.get(path).text
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)
        assert assets and all(a.startswith("/static-offline-docs/") for a in assets), assets
        assert "cdn." not in page and "fonts.googleapis" not in page
        for asset in assets:
            assert client.get(asset).status_code == 200
    footer = re.search(r"<footer>(.*?)</footer>", client.get("/").text, re.S).group(1)
    assert 'href="/docs"' in footer and 'href="/redoc"' in footer


def test_the_upload_page_links_the_submission_format(client):
    red = client.post("/api/teams/red/token", headers=ORGANIZER).json()["token"]
    assert 'href="/help/submissions"' in client.get("/upload", headers={"Authorization": f"Bearer {red}"}).text
    page = client.get("/help/format").text
    assert "metadata.json" in page and "<h1>Submissions</h1>" in page


def test_a_team_gets_a_starter_kit_a_checklist_and_the_limits_in_plain_words(client, tmp_path):
    """/help/submissions was written for developers (CLI flags, settings, HTTP codes); a team
    now finds working samples per track to download, a checklist and the round's limits."""
    import tarfile

    from arena.intake.metadata import Metadata

    page = client.get("/help/submissions").text
    samples = re.findall(r'<a href="/help/samples/([a-z_]+)\.tar\.gz">', page)
    assert {"noop", "step_to_target", "decoder"} <= set(samples)  # an attack, a targeted attack, a defense
    limits = re.search(r'<ul id="limits">(.*?)</ul>', page, re.S).group(1)
    assert "ε 4, 16" in limits and "500 seconds for every 100 images" in limits and "512m of memory" in limits
    assert "no network" in limits and 'href="/help/format"' in page
    for name in samples:
        answer = client.get(f"/help/samples/{name}.tar.gz")
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/gzip"
        (tmp_path / f"{name}.tar.gz").write_bytes(answer.content)
        with tarfile.open(tmp_path / f"{name}.tar.gz") as packed:
            packed.extractall(tmp_path / name, filter="data")
        Metadata.read(tmp_path / name / name)  # what intake reads: a sound metadata.json
    assert client.get("/help/samples/..%2Fsecrets.tar.gz").status_code == 404
    assert client.get("/help/samples/unknown.tar.gz").status_code == 404


def test_rounds_show_their_deadline_and_a_team_its_uploads_left(client):
    """The round's banner on the leaderboards and the upload page, and the rounds page: time
    left to the deadline, and for a team the uploads it may still make per track."""
    with transaction(client.app.state.settings) as session:
        rounds.update(rounds.find(session, "synthetic"), closes_at=utcnow() + timedelta(days=2, hours=3, minutes=30),
                      daily_quota=2)
    red = {"Authorization": f"Bearer {client.post('/api/teams/red/token', headers=ORGANIZER).json()['token']}"}
    with transaction(client.app.state.settings) as session:
        closes = rounds.window(rounds.find(session, "synthetic")).closes_at
    banner = re.search(r'<p class="round-banner" id="round-banner">(.*?)</p>', client.get("/").text, re.S).group(1)
    assert f"uploads close {closes:%Y-%m-%d %H:%M} UTC" in banner  # the browser counts the time left (cached page)
    assert f'<time class="countdown" datetime="{closes.isoformat()}">' in banner
    upload = client.get("/upload", headers=red).text
    assert re.search(r">\(2 d 3 h (29|30) min left\)<", upload)  # the upload page is not cached: the server counts
    assert "Uploads left now: attack 1, targeted attack 2, defense 2" in upload  # red-attack entered today
    rows = re.findall(r"<tr>(.*?)</tr>", client.get("/rounds").text, re.S)
    assert len(rows) == 2 and "4, 16" in rows[1] and "quota per team and track: 2 a day" in rows[1]


def test_the_leaderboards_show_one_entry_per_team_and_tag_baselines(client):
    """Everyone sees one row per team and track; organizers can ask for every entry."""
    settings = client.app.state.settings
    with transaction(settings) as session:
        add_submission(session, "blue-defense-2", SubmissionKind.DEFENSE, owner="blue")
        add_submission(session, "reference", SubmissionKind.DEFENSE, owner="organizers").baseline = True
    public = client.get("/").text
    board = re.search(r'id="board-defense">(.*?)</table>', public, re.S).group(1)
    assert "blue-defense-2" in board and "blue-defense<" not in board
    assert re.search(r'reference</a> <span class="tag baseline"', board)
    assert "All submissions" not in public and client.get("/api/leaderboards/defense?scope=all").status_code == 403
    every = client.get("/?scope=all", headers=ORGANIZER).text
    assert "blue-defense<" in re.search(r'id="board-defense">(.*?)</table>', every, re.S).group(1)
    rows = {r["submission"]: r for r in client.get("/api/leaderboards/defense?scope=all", headers=ORGANIZER).json()}
    assert rows["reference"]["rank"] is None and rows["reference"]["baseline"] is True
    assert [r["rank"] for r in rows.values()] == [None] * 3  # nothing scored yet: no rank (test_scoring_and_planning)
    matrix = client.get("/matrix").text  # the matrix marks the baseline too
    assert re.search(r'reference</span></a><span class="tag baseline"', matrix)


def test_phones_get_folded_glossaries_and_round_buttons_outside_the_table(client):
    """Issue 30, findings 13 and 14: each board's glossary was open under it (three times on a
    phone's long page); the organizer's Close/Publish/Carry sat in the last column of the rounds
    table, beyond a phone's sideways scroll; the banner went on in lower case after a period."""
    board = client.get("/").text
    assert board.count('<details class="notes-box"><summary>What the columns mean</summary>') == 3
    page = client.get("/rounds", headers=ORGANIZER).text
    table = re.search(r'<table id="rounds">(.*?)</table>', page, re.S).group(1)
    assert "<form" not in table and "<button" not in table
    actions = re.search(r'id="actions-1">(.*?)</details>', page, re.S).group(1)
    assert "<button>Close uploads</button>" in actions and "<button>Publish</button>" in actions
    with transaction(client.app.state.settings) as session:
        rounds.update(rounds.find(session), daily_quota=2)
    upload = client.get("/upload", headers=ORGANIZER).text
    assert "no deadline set. Quota per team and track: 2 a day." in re.sub(r"\s+", " ", upload)


def test_an_empty_log_says_so_to_its_team_and_nothing_to_others(tmp_path):
    """A dry run that printed nothing showed no log at all, which read as "no access"."""
    settings = make_settings(tmp_path / "arena", organizer_token="organizer-secret", epsilons=[4])
    synth_dataset(settings, 2, batch_size=2)
    report = {"passed": True, "images": 2, "seconds": 1.0, "time_limit": 10.0, "exit_code": 0, "problems": [],
              "log_tail": ""}
    empty = logs.keep(settings, b"")  # its full log, kept as every run's is
    with transaction(settings) as session:
        quiet = add_submission(session, "quiet", SubmissionKind.ATTACK, owner="red", validation_report=report).id
        session.add(DryRun(submission_id=quiet, round_id=rounds.find(session).id, status=JobStatus.DONE,
                           log_sha256=empty.sha256, log_size=empty.size))
    client = TestClient(create_app(settings))
    page = client.get(f"/submissions/{quiet}", headers=ORGANIZER).text
    assert 'id="dry-run-log">Its log is empty: the dry run printed nothing.' in page
    assert "Download full log" not in page  # nothing to download: the page says so instead
    download = client.get(f"/submissions/{quiet}/dry-run/log", headers=ORGANIZER)
    assert download.status_code == 200 and download.content == b""
    assert 'id="dry-run-log"' not in client.get(f"/submissions/{quiet}").text
    assert client.get(f"/submissions/{quiet}/dry-run/log").status_code == 404


def test_a_query_job_is_listed_on_both_submissions_pages_each_team_reading_its_own_side_s_log(tmp_path):
    """Query jobs had no page: a query attack's team could not read what its runs printed."""
    from sqlalchemy import select

    from arena.models import Batch, QueryJob

    settings, client, boundary, served = _query_pair(tmp_path, batch_size=4)
    with transaction(settings) as session:
        session.add(QueryJob(attack_id=boundary, defense_id=served, batch_id=session.scalars(select(Batch.id)).one(),
                             status=JobStatus.DONE, attempt=1, seconds=2.5, attack_exit_code=0,
                             problems=["3 queries refused: past the budget"], attack_log="ATTACK SIDE PRINTED",
                             defense_log="DEFENSE SIDE PRINTED"))
    red, blue = ({"Authorization": f"Bearer {client.post(f'/api/teams/{t}/token', headers=ORGANIZER).json()['token']}"}
                 for t in ("red", "blue"))
    attack_page = client.get(f"/submissions/{boundary}", headers=red).text.split('id="query-runs"')[1]
    assert "<td>served</td>" in attack_page and "3 queries refused: past the budget" in attack_page
    assert "ATTACK SIDE PRINTED" in attack_page and "DEFENSE SIDE PRINTED" not in attack_page
    defense_page = client.get(f"/submissions/{served}", headers=blue).text.split('id="query-runs"')[1]
    assert "<td>boundary</td>" in defense_page
    assert "DEFENSE SIDE PRINTED" in defense_page and "ATTACK SIDE PRINTED" not in defense_page
    seen_by_blue = client.get(f"/submissions/{boundary}", headers=blue).text
    assert "ATTACK SIDE PRINTED" not in seen_by_blue and "DEFENSE SIDE PRINTED" not in seen_by_blue
    [run] = client.get(f"/api/submissions/{boundary}", headers=red).json()["query_runs"]
    assert (run["opponent"], run["status"], run["log_tail"]) == ("served", "done", "ATTACK SIDE PRINTED")
    assert "log_tail" not in client.get(f"/api/submissions/{boundary}", headers=blue).json()["query_runs"][0]
