"""Sessions, the login limit, security headers and what hidden leaderboards hide, through
the app (TestClient); the browser's side of the same is in test_web_tournament.py."""

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from arena.admin import tournament
from arena.admin.teams import issue_token
from arena.competition import rounds
from arena.config import Settings
from arena.db import transaction
from arena.intake.archive import pack
from arena.models import AttackJob, Batch, DryRun, JobAttempt, JobStatus, SubmissionKind, Team, Visibility, WebSession
from arena.web.app import create_app
from arena.web.headers import DOCS_POLICY, PAGES_POLICY
from arena.web.limits import AddressLimiter
from arena.web.permissions import PLATFORM_FAILURE
from conftest import SAMPLES, make_settings
from factories import add_submission, synth_dataset

ORGANIZER = "organizer-secret"
BEARER = {"Authorization": f"Bearer {ORGANIZER}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def site(tmp_path):
    """Teams red and blue with tokens, red's attack with one container run, a dataset; the
    login limit is 3 wrong credentials a minute, on a clock the test moves."""
    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER, login_max_failures=3,
                             login_window_seconds=60)
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        tokens = {name: issue_token(session, name) for name in ("red", "blue")}
        red = session.scalar(select(Team).where(Team.name == "red"))
        attack = add_submission(session, "red-attack", SubmissionKind.ATTACK, owner=red,
                                validation_report={"passed": True, "images": 2, "seconds": 1.0, "time_limit": 10.0,
                                                   "exit_code": 0, "timed_out": False, "problems": [],
                                                   "log_tail": "red's log"})
        job = AttackJob(submission=attack, batch=session.scalars(select(Batch)).first(), epsilon=2)
        session.add(job)
        session.flush()
        session.add(JobAttempt(attack_job_id=job.id, seconds=12.5, images=2, exit_code=0, log_excerpt="run log"))
        attack_id = attack.id
    app = create_app(settings)
    clock = Clock()
    app.state.login_limiter.clock = clock
    return TestClient(app), settings, tokens, attack_id, clock


def _log_in(client: TestClient, token: str):
    return client.post("/login", data={"token": token}, follow_redirects=False)


def _cookie(response, name: str = "arena_session") -> str:
    return next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}="))


def _attributes(cookie: str) -> set[str]:
    return {part.strip().lower() for part in cookie.split(";")}


def _sessions(settings) -> list[WebSession]:
    with transaction(settings) as session:
        rows = list(session.scalars(select(WebSession)))
        session.expunge_all()
        return rows


# Sessions


@pytest.mark.parametrize("who", ["organizer", "red"])
def test_the_session_cookie_carries_no_token_and_logout_ends_the_session(site, who):
    client, settings, tokens, _, _ = site
    token = ORGANIZER if who == "organizer" else tokens["red"]
    login = _log_in(client, token)
    assert login.status_code == 303
    cookie = _cookie(login)
    assert token not in cookie and {"httponly", "samesite=strict", "path=/"} <= _attributes(cookie)
    assert "secure" not in _attributes(cookie)  # plain http here; see the https test
    sid = client.cookies["arena_session"]
    assert sid != token and len(sid) >= 40
    stored = _sessions(settings)
    assert len(stored) == 1 and sid not in {stored[0].sid_sha256, stored[0].binding}
    assert token not in {stored[0].sid_sha256, stored[0].binding}
    assert client.get("/upload").status_code == 200

    logout = client.post("/logout", follow_redirects=False)
    assert logout.status_code == 303 and _cookie(logout).startswith('arena_session="";')
    assert _sessions(settings) == []
    client.cookies.set("arena_session", sid)  # the old id, kept by someone who copied it
    assert client.get("/upload").status_code == 401
    assert "Log in" in client.get("/").text


def test_a_new_team_token_ends_the_teams_sessions(site):
    client, _, tokens, _, _ = site
    _log_in(client, tokens["red"])
    assert "team red" in client.get("/upload").text
    assert client.post("/api/teams/red/token", headers=BEARER).status_code == 201
    assert client.get("/upload").status_code == 401


def test_an_expired_session_is_nobody(site):
    client, settings, _, _, _ = site
    _log_in(client, ORGANIZER)
    assert client.get("/organizer").status_code == 200
    with transaction(settings) as session:
        row = session.scalar(select(WebSession))
        row.expires_at = row.created_at
    assert client.get("/organizer").status_code == 401


def test_the_cookie_is_secure_over_https(site):
    client, _, _, _, _ = site
    https = TestClient(client.app, base_url="https://testserver")
    assert "secure" in _attributes(_cookie(_log_in(https, ORGANIZER)))


def test_an_old_raw_token_cookie_is_no_credential_and_is_removed_at_login(site):
    client, _, _, _, _ = site
    client.cookies.set("arena_token", ORGANIZER)
    assert client.get("/organizer").status_code == 401
    assert _cookie(_log_in(client, ORGANIZER), "arena_token").startswith('arena_token="";')


# Login limit


def test_wrong_logins_are_answered_429_until_the_window_has_passed(site):
    client, _, tokens, _, clock = site
    for _ in range(3):
        assert _log_in(client, "guess").status_code == 401
        clock.now += 1
    refused = _log_in(client, ORGANIZER)  # right, but too soon
    assert refused.status_code == 429 and "too many wrong credentials" in refused.text
    assert int(refused.headers["retry-after"]) == 57  # the first failure, at 0 s, leaves at 60 s
    bearer = client.get("/api/submissions/1/logs", headers={"Authorization": f"Bearer {tokens['red']}"})
    assert bearer.status_code == 429 and "try again in 57 seconds" in bearer.json()["detail"]
    assert client.get("/api/leaderboards/defense").status_code == 200  # no credential: nothing to limit
    clock.now += 56
    assert _log_in(client, ORGANIZER).status_code == 429
    clock.now += 1
    assert _log_in(client, ORGANIZER).status_code == 303
    assert client.get("/organizer").status_code == 200


def test_wrong_bearer_tokens_count_as_wrong_logins(site):
    client, _, _, _, _ = site
    for _ in range(3):
        assert client.get("/api/results", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert _log_in(client, ORGANIZER).status_code == 429


def test_the_limiter_counts_each_address_in_its_own_sliding_window():
    clock = Clock()
    limiter = AddressLimiter(max_events=2, window=10, clock=clock, max_clients=3)
    limiter.count("a")
    clock.now += 5
    limiter.count("a")
    assert limiter.retry_after("a") == 5 and limiter.retry_after("b") is None
    clock.now += 5
    assert limiter.retry_after("a") is None  # the first failure has left the window
    limiter.count("a")
    assert limiter.retry_after("a") == 5
    for client in "bcdef":
        limiter.count(client)
    assert len(limiter._events) <= 3  # memory stays bounded


# Headers


def _secured(response, policy: str = PAGES_POLICY) -> None:
    assert response.headers["content-security-policy"] == policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


def test_every_answer_has_the_security_headers(site):
    client, _, _, _, _ = site
    for url in ("/", "/matrix", "/api/leaderboards/defense", "/api/tournament", "/static/arena.js",
                "/static/arena.css", "/no-such-page", "/api/results"):
        response = client.get(url)
        _secured(response)
        assert ("no-store" in response.headers.get("cache-control", "")) != url.startswith("/static/"), url
    _secured(client.get("/docs"), DOCS_POLICY)
    assert "frame-ancestors 'none'" in PAGES_POLICY and "script-src 'self'" in PAGES_POLICY
    assert "'unsafe-inline'" not in PAGES_POLICY.replace("style-src-attr 'unsafe-inline'", "")


def test_the_templates_need_no_inline_script():
    from arena import REPO_ROOT

    for template in (REPO_ROOT / "web" / "templates").glob("*.html"):
        text = template.read_text()
        assert "<script>" not in text and "<style" not in text and " on" + "click=" not in text, template.name


def test_secrets_are_answered_no_store(site):
    client, _, tokens, attack_id, _ = site
    _log_in(client, ORGANIZER)
    issued = client.post("/organizer/teams", data={"team": "green", "create": "true"})
    assert issued.status_code == 201 and "no-store" in issued.headers["cache-control"]
    for url in (f"/api/submissions/{attack_id}/logs", f"/api/submissions/{attack_id}", "/api/results", "/results",
                f"/submissions/{attack_id}"):
        response = client.get(url)
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store", url
    new = client.post("/api/teams/green/token", headers=BEARER)
    assert new.headers["cache-control"] == "no-store"


# Hidden leaderboards hide the jobs and the runs' timings


def test_hidden_leaderboards_hide_jobs_and_run_timings_but_not_from_organizers(site):
    client, _, tokens, attack_id, _ = site
    red, blue = ({"Authorization": f"Bearer {tokens[n]}"} for n in ("red", "blue"))
    detail = f"/api/submissions/{attack_id}"
    assert len(client.get("/api/jobs").json()) == 1
    assert client.get(detail).json()["attempts"][0]["seconds"] == 12.5  # public while the leaderboards are

    assert client.patch("/api/tournament", json={"leaderboards_public": False}, headers=BEARER).status_code == 200
    for headers in ({}, red, blue):
        jobs = client.get("/api/jobs", headers=headers)
        assert jobs.status_code == 403 and "hidden" in jobs.json()["detail"]
    assert len(client.get("/api/jobs", headers=BEARER).json()) == 1
    for headers in ({}, blue):
        answer = client.get(detail, headers=headers).json()
        assert answer["attempts"] == [] and answer["runs_visible"] is False
    for headers in (red, BEARER):
        answer = client.get(detail, headers=headers).json()
        assert answer["attempts"][0]["seconds"] == 12.5 and answer["runs_visible"] is True
    page = client.get(f"/submissions/{attack_id}").text
    assert "12.5" not in page and "runs-hidden" in page
    _log_in(client, tokens["red"])
    assert "12.5" in client.get(f"/submissions/{attack_id}").text


@pytest.mark.parametrize(("trusted", "one_address"), [([], True), (["127.0.0.1"], False)], ids=["no-proxy", "proxy"])
def test_forwarded_addresses_are_believed_only_from_trusted_proxies(tmp_path, trusted, one_address):
    """Served as `arena web` serves it: with no proxy configured, X-Forwarded-For from loopback
    counts for nothing, so guesses spread over made-up addresses are still one address's;
    with the proxy named in ARENA_TRUSTED_PROXIES, each forwarded address is its own."""
    import web_server
    from web_server import live_server

    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER, login_max_failures=3,
                             login_window_seconds=600, trusted_proxies=trusted)
    with live_server(create_app(settings)) as url:
        for k in range(3):  # documentation addresses (RFC 5737), only ever written in a header
            guess = web_server.post(f"{url}/login", data={"token": "guess"}, headers={"X-Forwarded-For": f"203.0.113.{k}"})
            assert guess.status_code == 401
        right = web_server.post(f"{url}/login", data={"token": ORGANIZER}, headers={"X-Forwarded-For": "203.0.113.9"})
    assert (right.status_code == 429) is one_address, right.text


@pytest.mark.parametrize("page", ["/", "/matrix"])
def test_the_page_after_a_login_a_logout_or_another_role_knows_who_asks(site, page):
    """Served for real, with every commit made slow: the page a browser lands on after logging
    in said "Log in" about one time in three, because the request's transaction was committed
    after its answer was sent (FastAPI ends a ``yield`` dependency after the answer by
    default), so the redirect's request could arrive before the session existed. Now each
    answer follows its commit: no cached standings page crosses a login, a logout or a role."""
    from sqlalchemy import event

    import web_server
    from arena.db import get_engine
    from web_server import live_server

    _client, settings, tokens, _attack, _clock = site
    engine = get_engine(settings.resolved_database_url)

    def slow_commit(_connection) -> None:
        time.sleep(0.3)  # widens the window a late commit leaves open; a correct order is not timing

    event.listen(engine, "commit", slow_commit)
    try:
        with live_server(create_app(settings)) as url, web_server.client(url) as browser:
            assert _who(browser.get(page).text) == "Log in"  # the anonymous page, now in the cache
            for token, shown in ((tokens["red"], "team red Log out"), (ORGANIZER, "organizer Log out")):
                assert _who(browser.post("/login", data={"token": token, "next": page}, follow_redirects=True).text) == shown
                assert browser.post("/logout").status_code == 303
                assert _who(browser.get(page).text) == "Log in"
    finally:
        event.remove(engine, "commit", slow_commit)


def _who(page: str) -> str:
    """What the page's header says of its reader, as words."""
    import re

    header = re.search(r'<div class="who">(.*?)</div>', page, re.S).group(1)
    return " ".join(re.sub(r"<[^>]+>", " ", header).split())


# Request bodies


def _raw(url: str, head: str, body: bytes = b"") -> str:
    """Send a request's head (and the start of its body) over a socket, keep the connection
    open without sending more, and return the first answer the server gives (30 s at most)."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        return connection.recv(65536).decode("latin-1")


@pytest.mark.parametrize("path", ["/api/submissions", "/register", "/login"])
def test_nobody_s_large_body_is_refused_before_it_is_read(tmp_path, path):
    """200 MB declared and not one byte sent: a caller with no credential is answered at once
    (it used to be read to the end, and spooled to disk, before the 401)."""
    from web_server import live_server

    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER)
    with live_server(create_app(settings)) as url:
        answer = _raw(url, f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: multipart/form-data; boundary=b\n"
                           f"Content-Length: {200 * 2**20}\n")
        wrong = _raw(url, f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer guess\n"
                          f"Content-Type: multipart/form-data; boundary=b\nContent-Length: {200 * 2**20}\n")
    assert answer.startswith("HTTP/1.1 401") and "needs a team token or the organizer credential" in answer, answer
    assert wrong.startswith("HTTP/1.1 401") and "unknown or revoked token" in wrong, wrong


def test_a_body_that_stops_arriving_is_answered_408(tmp_path):
    from web_server import live_server

    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER, body_idle_seconds=1)
    with live_server(create_app(settings)) as url:
        answer = _raw(url, f"POST /api/submissions HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {ORGANIZER}\n"
                           "Content-Type: multipart/form-data; boundary=b\nContent-Length: 100000\n", b"--b\r\n" + b"x" * 1000)
    assert answer.startswith("HTTP/1.1 408") and "no part of the request body arrived for 1 seconds" in answer, answer


# Cross-site requests and host names


def _title(settings) -> str:
    with transaction(settings) as session:
        return tournament.current(session).title


@pytest.mark.parametrize("claim", [
    {"Origin": "http://evil.example"},
    {"Origin": "http://testserver:8080"},  # another port: the same site (the cookie goes), not the same origin
    {"Origin": "https://testserver"},
    {"Origin": "null"},  # a sandboxed frame, a data: page
    {"Referer": "http://evil.example/page"},  # a browser that names no Origin
], ids=["foreign", "other-port", "other-scheme", "opaque", "foreign-referer"])
def test_a_form_from_another_origin_is_refused_and_changes_nothing(site, claim):
    client, settings, _, _, _ = site
    _log_in(client, ORGANIZER)
    form = {"title": "Taken over", "uploads_open": "true"}
    refused = client.post("/organizer/settings", data=form, headers=claim, follow_redirects=False)
    assert refused.status_code == 403 and "from another site" in refused.text
    assert _title(settings) != "Taken over"
    api = client.post("/api/submissions", files={"archive": ("a.zip", b"x")}, headers=claim)
    assert api.status_code == 403 and "from another site" in api.json()["detail"]


@pytest.mark.parametrize("claim", [{"Origin": "http://testserver"}, {"Referer": "http://testserver/organizer"}, {}],
                         ids=["own-origin", "own-referer", "a-program"])
def test_a_form_from_arena_s_own_pages_or_a_program_goes_through(site, claim):
    client, settings, _, _, _ = site
    _log_in(client, ORGANIZER)
    sent = client.post("/organizer/settings", data={"title": "Renamed"}, headers=claim, follow_redirects=False)
    assert sent.status_code == 303 and _title(settings) == "Renamed"


def test_a_foreign_page_cannot_log_a_browser_in_as_another_team(site):
    client, settings, tokens, _, _ = site
    refused = client.post("/login", data={"token": tokens["red"]}, headers={"Origin": "http://evil.example"},
                          follow_redirects=False)
    assert refused.status_code == 403 and not refused.headers.get_list("set-cookie")
    assert _sessions(settings) == []
    assert _log_in(client, tokens["red"]).status_code == 303  # from the login page itself


def test_api_clients_with_a_bearer_token_are_not_asked_where_they_come_from(site):
    client, *_ = site
    issued = client.post("/api/teams/blue/token", headers={**BEARER, "Origin": "http://evil.example"})
    assert issued.status_code == 201


@pytest.mark.parametrize("path", ["/matrix/", "/login/", "/api/leaderboards/attack", "/"])
def test_a_host_name_not_allowed_is_answered_400_and_never_reflected(site, path):
    client, *_ = site
    answer = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert answer.status_code == 400 and "location" not in answer.headers and "evil.example" not in answer.text
    assert answer.headers["x-frame-options"] == "DENY"


def test_allowed_hosts_are_a_setting_people_type_as_a_list():
    assert Settings(allowed_hosts=" arena.example.org, *.example.org ").allowed_hosts == ["arena.example.org",
                                                                                        "*.example.org"]


# Who may see what (web/permissions.py): each round's visibility, every route alike


@pytest.fixture
def hidden_final(site):
    """``site`` with a second round, "final", hidden while the tournament's switch stays on:
    red's attack ran there too (7.5 s, failing on the platform with the engine's own words)."""
    client, settings, tokens, attack_id, _ = site
    final = synth_dataset(settings, 2, batch_size=2, name="final")
    with transaction(settings) as session:
        round_ = rounds.of_dataset(session, final.id)
        round_.visibility = Visibility.HIDDEN
        job = AttackJob(submission_id=attack_id, batch=session.scalars(select(Batch).where(Batch.dataset_id == final.id)).one(),
                        epsilon=2)
        session.add(job)
        session.flush()
        session.add(JobAttempt(attack_job_id=job.id, seconds=7.5, images=2, error=ENGINE_WORDS))
    return client, tokens, attack_id


ENGINE_WORDS = "cannot create container: 500 Server Error for http+docker://localhost/v1.41/containers/create"


def test_a_hidden_round_hides_its_jobs_runs_and_standings_while_the_others_stay_public(hidden_final):
    client, tokens, attack_id = hidden_final
    red, blue = ({"Authorization": f"Bearer {tokens[n]}"} for n in ("red", "blue"))
    for headers in ({}, blue):
        for path in ("/api/jobs?dataset=final", "/api/leaderboards/attack?dataset=final", "/api/matrix?dataset=final"):
            refused = client.get(path, headers=headers)
            assert refused.status_code == 403 and "hidden" in refused.json()["detail"], path
        assert len(client.get("/api/jobs?dataset=synthetic", headers=headers).json()) == 1
        public = client.get(f"/api/submissions/{attack_id}?dataset=synthetic", headers=headers).json()
        assert [a["seconds"] for a in public["attempts"]] == [12.5] and public["runs_visible"] is True
        for hidden in (client.get(f"/api/submissions/{attack_id}", headers=headers).json(),  # about its newest round
                       client.get(f"/api/submissions/{attack_id}?dataset=final", headers=headers).json()):
            assert hidden["attempts"] == [] and hidden["runs_visible"] is False
    for headers in (red, BEARER):
        for dataset, seconds in (("synthetic", [12.5]), ("final", [7.5])):
            detail = client.get(f"/api/submissions/{attack_id}?dataset={dataset}", headers=headers).json()
            assert [a["seconds"] for a in detail["attempts"]] == seconds and detail["runs_visible"] is True
    assert len(client.get("/api/jobs?dataset=final", headers=BEARER).json()) == 1


def test_the_engine_s_words_about_a_platform_failure_are_for_organizers(hidden_final):
    client, tokens, attack_id = hidden_final
    red = {"Authorization": f"Bearer {tokens['red']}"}
    said = {a["seconds"]: a["platform_error"] for a in client.get(f"/api/submissions/{attack_id}/logs", headers=red).json()["runs"]}
    assert said == {7.5: PLATFORM_FAILURE, 12.5: None}
    organizers = client.get(f"/api/submissions/{attack_id}/logs", headers=BEARER).json()["runs"]
    assert {a["platform_error"] for a in organizers} == {ENGINE_WORDS, None}
    _log_in(client, tokens["red"])
    page = client.get(f"/submissions/{attack_id}?dataset=final").text  # the failed run was on the final
    assert PLATFORM_FAILURE in page and "v1.41" not in page


def test_every_entry_is_refused_to_teams_on_the_pages_as_on_the_api(site):
    """The leaderboards page used to narrow ``scope=all`` to the counting entries in silence."""
    client, _, tokens, _, _ = site
    _log_in(client, tokens["red"])
    refused = client.get("/?scope=all")
    assert refused.status_code == 403 and "for organizers" in refused.text
    assert client.get("/api/leaderboards/attack?scope=all").status_code == 403
    _log_in(client, ORGANIZER)
    assert client.get("/?scope=all").status_code == 200


def test_a_platform_failure_of_a_dry_run_is_told_without_the_engine_s_words(site, tmp_path, monkeypatch, caplog):
    """The upload is answered at once (202, queued); its dry run, in the web's background
    checker, meets an engine that fails: the submission stays queued, to be tried again, and
    the engine's words reach the organizers' log and the dry run's row, never a team."""
    from arena.execution import checking
    from arena.sandbox.containers import SandboxError

    client, settings, tokens, _, _ = site

    def engine_fails(*_):
        raise SandboxError(ENGINE_WORDS)

    monkeypatch.setattr(checking.pinning, "pin", engine_fails)  # the dry run's first word with the engine
    archive = pack(SAMPLES / "noop", tmp_path / "noop.tar.gz")
    blue = {"Authorization": f"Bearer {tokens['blue']}"}
    with archive.open("rb") as body:
        answer = client.post("/api/submissions", files={"archive": (archive.name, body)}, headers=blue)
    assert answer.status_code == 202 and answer.json()["status"] == "queued", answer.text
    client.app.state.checker.join(60)
    seen = client.get(f"/api/submissions/{answer.json()['id']}", headers=blue)
    assert seen.json()["status"] == "queued" and seen.json()["queue_place"] == 1
    assert "docker" not in seen.text.lower() and "v1.41" not in seen.text
    page = client.get(f"/submissions/{answer.json()['id']}", headers=blue).text
    assert "1st in the queue" in page and "v1.41" not in page
    with transaction(settings) as session:
        dry_run = session.scalar(select(DryRun).where(DryRun.submission_id == answer.json()["id"]))
        assert dry_run.status is JobStatus.ERROR and ENGINE_WORDS in dry_run.error
    assert ENGINE_WORDS in caplog.text  # the organizers' copy, in the web log


@pytest.mark.parametrize("through", ["api", "page"])
def test_hiding_the_leaderboards_through_the_web_takes_effect_on_the_next_request(site, through):
    """Anonymous readers of a cached board get no query, so the switch was seen only once the
    cache checked again (up to 0.5 s; here its clock never moves): the next reader after an
    organizer hid the boards still got them."""
    client, *_ = site
    client.app.state.standings._clock = lambda: 0.0  # the cache's delay never runs out
    assert client.get("/api/leaderboards/defense").status_code == 200
    assert "hidden until" not in client.get("/").text  # both cached now
    if through == "api":
        assert client.patch("/api/tournament", json={"leaderboards_public": False}, headers=BEARER).status_code == 200
    else:
        _log_in(client, ORGANIZER)
        form = {"title": "Arena", "uploads_open": "true"}  # the public box unticked
        assert client.post("/organizer/settings", data=form, follow_redirects=False).status_code == 303
        client.post("/logout", follow_redirects=False)
        client.cookies.clear()
    hidden = client.get("/api/leaderboards/defense")
    assert hidden.status_code == 403 and "hidden" in hidden.json()["detail"]
    assert "The leaderboards are hidden until the end" in client.get("/").text
