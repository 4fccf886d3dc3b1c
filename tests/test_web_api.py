"""The REST API and the pages without containers: who may do what, bad input, and a
property-based run against the OpenAPI description (schemathesis) that must find no 5xx and
no answer that differs from its declared schema or content type."""

import io
import tarfile

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from sqlalchemy import select

from arena import job_states
from arena.admin.teams import issue_token
from arena.competition import rounds
from arena.db import transaction
from arena.execution import query_jobs
from arena.models import QueryJob, QueryResult, Submission, SubmissionKind, Team
from arena.web.app import create_app
from conftest import make_settings
from factories import add_submission, synth_dataset

ORGANIZER = {"Authorization": "Bearer organizer-secret"}


def _submission(session, team: Team, name: str, kind: SubmissionKind) -> Submission:
    """An accepted submission with a full dry-run report, whose log only its team may read."""
    return add_submission(
        session, name, kind, owner=team,
        meta={"type": kind.value, "container": "arena/python:bookworm", "entry_point": "run.sh"},
        validation_report={"passed": True, "images": 4, "seconds": 1.0, "time_limit": 20.0, "exit_code": 0,
                           "timed_out": False, "problems": [], "log_tail": f"secret log of {name}"},
    )


@pytest.fixture
def arena(tmp_path):
    """Two teams with tokens, an attack and a defense (accepted, no results yet), a dataset."""
    settings = make_settings(tmp_path / "arena", organizer_token="organizer-secret", max_upload_bytes=4096)
    synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        tokens = {name: issue_token(session, name) for name in ("red", "blue")}
        red, blue = (session.scalar(select(Team).where(Team.name == n)) for n in ("red", "blue"))
        ids = {"attack": _submission(session, red, "red-attack", SubmissionKind.ATTACK),
               "defense": _submission(session, blue, "blue-defense", SubmissionKind.DEFENSE)}
        session.flush()
        ids = {k: s.id for k, s in ids.items()}
    client = TestClient(create_app(settings))
    return client, settings, tokens, ids


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_reading_is_public_and_acting_needs_a_credential(arena):
    client, _, tokens, ids = arena
    assert client.get("/api/leaderboards/defense").status_code == 200
    assert [r["submission"] for r in client.get("/api/leaderboards/attack").json()] == ["red-attack"]
    assert client.get("/").status_code == 200 and "red-attack" in client.get("/").text
    for method, url in [("post", "/api/runs"), ("patch", "/api/tournament"), ("post", "/api/teams/x/token"),
                        ("get", "/api/results"), ("get", f"/api/submissions/{ids['attack']}/rerun"),
                        ("post", f"/api/submissions/{ids['attack']}/disqualify"),
                        ("post", f"/api/submissions/{ids['attack']}/repin")]:
        anonymous = client.request(method, url, json={"reason": "r"})
        as_team = client.request(method, url, json={"reason": "r"}, headers=_bearer(tokens["red"]))
        assert (anonymous.status_code, as_team.status_code) in {(401, 403), (405, 405)}, (method, url)
    assert client.post("/api/submissions", files={"archive": ("a.tar", b"x")}).status_code == 401
    assert client.get("/api/leaderboards/defense", headers=_bearer("forged")).status_code == 401
    assert client.get("/organizer").status_code == 401 and "Log in" in client.get("/organizer").text


def test_logs_are_shown_only_to_the_owning_team_and_organizers(arena):
    client, _, tokens, ids = arena
    url = f"/api/submissions/{ids['attack']}"
    assert "log_tail" not in client.get(url).json()["validation_report"]
    assert "log_tail" not in client.get(url, headers=_bearer(tokens["blue"])).json()["validation_report"]
    assert client.get(url, headers=_bearer(tokens["red"])).json()["validation_report"]["log_tail"] == "secret log of red-attack"
    assert client.get(url, headers=ORGANIZER).json()["logs_visible"] is True
    logs = f"/api/submissions/{ids['attack']}/logs"
    assert client.get(logs).status_code == 401
    assert client.get(logs, headers=_bearer(tokens["blue"])).status_code == 403
    assert client.get(logs, headers=_bearer(tokens["red"])).json()["dry_run_log_tail"] == "secret log of red-attack"
    client.post("/login", data={"token": tokens["blue"]})
    page = client.get(f"/submissions/{ids['attack']}").text
    assert "secret log" not in page and "Logs are shown to the submission's team" in page


def test_hidden_leaderboards_are_refused_to_teams_but_not_to_organizers(arena):
    client, _, tokens, _ = arena
    assert client.patch("/api/tournament", json={"leaderboards_public": False}, headers=ORGANIZER).status_code == 200
    for url in ("/api/leaderboards/defense", "/api/matrix", "/api/curves", "/api/export/error_matrix.csv"):
        response = client.get(url, headers=_bearer(tokens["red"]))
        assert response.status_code == 403 and "hidden" in response.json()["detail"]
        assert client.get(url, headers=ORGANIZER).status_code == 200
    assert "hidden until the end" in client.get("/").text


def test_a_disqualified_submission_leaves_the_leaderboard(arena):
    client, settings, _, ids = arena
    url = f"/api/submissions/{ids['defense']}/disqualify"
    assert client.post(url, json={"reason": "  "}, headers=ORGANIZER).status_code == 422
    assert client.post(url, json={"reason": "read the labels"}, headers=ORGANIZER).json()["status"] == "disqualified"
    assert client.get("/api/leaderboards/defense").json() == []
    with transaction(settings) as session:
        assert session.get(Submission, ids["defense"]).reason == "read the labels"


def test_a_new_token_revokes_the_old_one_and_the_login_cookie_works(arena):
    client, _, tokens, _ = arena
    fresh = client.post("/api/teams/red/token", headers=ORGANIZER).json()["token"]
    assert client.get("/upload", headers=_bearer(tokens["red"])).status_code == 401
    assert client.post("/login", data={"token": "wrong"}, follow_redirects=False).status_code == 401
    login = client.post("/login", data={"token": fresh}, follow_redirects=False)
    assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
    assert "team red" in client.get("/upload").text


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(("archive", "status", "message"), [
    (b"not an archive at all", 422, "is not a .zip, .tar or .tar.gz"),
    (_tar({"../escape.sh": b"x"}), 422, "escape"),
    (_tar({"run.sh": b"echo"}), 422, "metadata.json"),
    (b"x" * 5000, 413, "larger than the limit of 4096 bytes"),
    (b"x" * 200_000, 413, "larger than the limit of 4096 bytes"),  # refused before the body is parsed
    (b"", 422, "empty"),
], ids=["not-an-archive", "escaping-path", "no-metadata", "over-the-limit", "far-over-the-limit", "empty"])
def test_bad_uploads_get_a_clear_4xx_and_store_nothing(arena, archive, status, message):
    client, settings, tokens, _ = arena
    response = client.post("/api/submissions", files={"archive": ("sub.tar.gz", archive)}, headers=_bearer(tokens["red"]))
    assert response.status_code == status and message in response.json()["detail"]
    with transaction(settings) as session:
        assert len(session.scalars(select(Submission)).all()) == 2
    assert not list(settings.work_dir.glob("upload-*"))  # the scratch copy is gone


def test_closed_uploads_and_an_organizer_upload_without_a_team(arena):
    client, _, tokens, _ = arena
    no_team = client.post("/api/submissions", files={"archive": ("a.tar", b"x")}, headers=ORGANIZER)
    assert no_team.status_code == 422 and "which team" in no_team.json()["detail"]
    client.patch("/api/tournament", json={"uploads_open": False}, headers=ORGANIZER)
    closed = client.post("/api/submissions", files={"archive": ("a.tar", b"x")}, headers=_bearer(tokens["red"]))
    assert closed.status_code == 403 and "closed" in closed.json()["detail"]


@pytest.mark.parametrize(("url", "status", "message"), [
    ("/api/submissions/999", 404, "no submission with id 999"),
    ("/api/leaderboards/defense?dataset=nope", 404, "no dataset named 'nope'"),
    ("/api/leaderboards/bogus", 422, "defense"),
    ("/api/matrix?eps=3", 404, "no results at eps=3"),
    ("/api/matrix?value=score", 422, "error"),
    ("/api/jobs?limit=0", 422, "greater than or equal to 1"),
    ("/api/export/nothing.csv", 404, "no export 'nothing'"),
    ("/api/curves?defense=ghost", 404, "ghost"),
])
def test_unknown_ids_and_bad_parameters_are_4xx_with_a_message(arena, url, status, message):
    client = arena[0]
    response = client.get(url)
    assert response.status_code == status and message in response.text


def test_pages_answer_errors_as_html(arena):
    client = arena[0]
    response = client.get("/submissions/999")
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]
    assert "no submission with id 999" in response.text


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def _fuzz(app, methods: set[str], headers: dict | None) -> None:
    """Every operation of the OpenAPI description, with generated valid and invalid input: no
    5xx, and every answer (errors included) has the declared content type and schema."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() not in methods:
            continue

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()


def test_no_request_to_a_read_endpoint_gets_a_5xx_even_as_organizer(arena):
    _fuzz(arena[0].app, {"GET"}, ORGANIZER)


def test_no_request_from_the_public_gets_a_5xx(arena):
    """Every method, without credentials (an organizer's POSTs would start runs and forget results)."""
    _fuzz(arena[0].app, {"GET", "POST", "PATCH"}, None)


def test_a_chunked_body_past_the_limit_is_cut_off(arena):
    """No Content-Length to go by: the body is counted as it arrives."""
    client, _, tokens, _ = arena

    def chunks():
        for _ in range(100):
            yield b"x" * 4096

    response = client.post("/api/submissions", content=chunks(), headers={
        **_bearer(tokens["red"]), "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413 and "larger than the limit" in response.json()["detail"]


def _query_round_ran(settings) -> None:
    """Red's query attack against blue's served defense, every image answered: as a run of
    the round's query jobs leaves them (no container)."""
    with transaction(settings) as session:
        red, blue = (session.scalar(select(Team).where(Team.name == n)) for n in ("red", "blue"))
        add_submission(session, "red-query", SubmissionKind.QUERY_ATTACK, owner=red)
        add_submission(session, "blue-served", SubmissionKind.DEFENSE, owner=blue, meta={"serving_entry_point": "s.sh"})
        query_jobs.plan(session, rounds.find(session))
        for job in session.scalars(select(QueryJob)):
            session.add_all(QueryResult(query_job_id=job.id, image_id=image.id, queries=5, refused=0,
                                        sha256=image.sha256, linf=4, l2=2.5, missing=False, label=0,
                                        labels_at={"2": image.true_label, "16": 0}) for image in job.batch.images)
            job_states.finish(job)


def test_the_query_track_s_boards_show_after_its_jobs_ran_and_hide_with_their_round(arena):
    client, settings, _, _ = arena
    _query_round_ran(settings)
    boards = client.get("/api/leaderboards/query").json()
    assert [(r["submission"], r["team"], r["avc_median_l2"], r["adversarial"]) for r in boards["attacks"]] == \
        [("red-query", "red", 2.5, 4)]
    assert [(r["submission"], r["avc_median_l2"], r["fooled"]) for r in boards["defenses"]] == [("blue-served", 2.5, 4)]
    # the 2017 rule: right at eps 2, wrong at 16 (and unlabelled, so misclassified, at 4 and 8)
    assert boards["defenses"][0]["at_epsilon"] == {"2": 1.0, "4": 0.0, "8": 0.0, "16": 0.0}
    assert boards["attacks"][0]["at_epsilon"] == {"2": 0.0, "4": 1.0, "8": 1.0, "16": 1.0} and boards["budget"] == 1000
    page = client.get("/").text
    assert "Query attacks" in page and "red-query" in page and "blue-served" in page
    hide = client.post("/organizer/rounds/synthetic/set", data={"visibility": "hidden"}, headers=ORGANIZER,
                       follow_redirects=False)
    assert hide.status_code == 303
    assert client.get("/api/leaderboards/query").status_code == 403
    assert "red-query" not in client.get("/?dataset=synthetic").text
    assert client.get("/api/leaderboards/query", headers=ORGANIZER).json()["attacks"][0]["submission"] == "red-query"
