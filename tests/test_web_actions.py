"""The actions (arena/actions.py) as the web calls them, the same for the API and the pages, its one error
handler (web/app.py) and its response schemas (web/schemas.py), without containers. A test's
docstring says what was wrong before; the others hold the API and the pages to the same answer."""

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import select

from arena import actions
from arena.db import transaction
from arena.errors import ConflictError, InputError, NotFoundError, PlatformError
from arena.models import Submission, SubmissionKind, SubmissionStatus, Team
from arena.web.app import create_app
from arena.web.schemas import LeaderboardRow, Matrix
from conftest import make_settings
from factories import synth_dataset

TOKEN = "organizer-secret"
ORGANIZER = {"Authorization": f"Bearer {TOKEN}"}


class FakeRunner:
    """Records the datasets it is asked to run; ``starts`` says whether a run starts (False:
    one was already under way, as when two organizers click at once)."""

    def __init__(self, starts: bool = True, has_engine: bool = True) -> None:
        self.starts = starts
        self.has_engine = has_engine
        self.started: list[str] = []
        self.state = type("State", (), {"running": False, "message": "", "outcome": "", "errors": []})()

    def start(self, dataset_name: str, first=None) -> bool:
        """Like ``TournamentRunner.start``: nothing happens, ``first`` included, unless a run starts."""
        if not self.starts or self.state.running:
            return False
        if first is not None:
            first()
        self.started.append(dataset_name)
        return True


def _client(settings) -> TestClient:
    client = TestClient(create_app(settings))
    client.app.state.runner = FakeRunner()
    return client


@pytest.fixture
def site(tmp_path):
    """Two datasets (``second`` is the newest) and one accepted attack; the runner is a fake."""
    settings = make_settings(tmp_path / "arena", organizer_token=TOKEN)
    synth_dataset(settings, 2, batch_size=2, name="first")
    synth_dataset(settings, 2, batch_size=2, name="second")
    with transaction(settings) as session:
        attack = Submission(team=Team(name="red"), name="red-attack", kind=SubmissionKind.ATTACK, sha256="a" * 64,
                            status=SubmissionStatus.ACCEPTED, meta={})
        session.add(attack)
        session.flush()
        attack_id = attack.id
    return _client(settings), attack_id


def _as_organizer_in_a_browser(client: TestClient) -> TestClient:
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    return client


def _is_error_page(response, status: int, sentence: str) -> None:
    """A page for a person: HTML with the status and the sentence, not JSON or a traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert f'<p class="error" id="error">{sentence}' in response.text and "Traceback" not in response.text


def test_an_upload_before_any_round_exists_is_a_403_that_says_so(tmp_path):
    """Once a 500 (DatasetError was missing from the upload's list of intake errors); with no
    dataset there is no round either, so no round takes the upload."""
    settings = make_settings(tmp_path / "arena", organizer_token=TOKEN)
    client = _client(settings)
    token = client.post("/api/teams/red/token", headers=ORGANIZER).json()["token"]
    archive = {"archive": ("sub.tar.gz", b"any bytes: the dataset is checked first")}
    response = client.post("/api/submissions", files=archive, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403 and "no round takes uploads" in response.json()["detail"]
    client.post("/login", data={"token": token})
    _is_error_page(client.post("/upload", files=archive), 403, "no round takes uploads")
    with transaction(settings) as session:
        assert session.scalars(select(Submission)).all() == []
    assert not list(settings.work_dir.glob("upload-*"))


@pytest.mark.parametrize("url", ["/api/runs", "/api/submissions/{attack}/rerun"])
def test_an_api_run_that_does_not_start_is_a_409_never_started(site, url):
    """The rerun answered "started": true whatever ``runner.start`` said."""
    client, attack = site
    client.app.state.runner.starts = False
    response = client.post(url.format(attack=attack), headers=ORGANIZER)
    assert response.status_code == 409 and "started" not in response.json()
    assert "run" in response.json()["detail"]


@pytest.mark.parametrize("url", ["/organizer/run", "/submissions/{attack}/rerun"])
def test_a_page_run_that_does_not_start_is_a_409_page(site, url):
    client, attack = site
    client.app.state.runner.starts = False
    response = _as_organizer_in_a_browser(client).post(url.format(attack=attack), data={"confirmed": "true"},
                                                       follow_redirects=False)
    assert response.status_code == 409 and "text/html" in response.headers["content-type"]


def test_a_rerun_while_a_run_is_under_way_forgets_nothing_and_starts_nothing(site):
    client, attack = site
    client.app.state.runner.state.running = True
    response = client.post(f"/api/submissions/{attack}/rerun", headers=ORGANIZER)
    assert response.status_code == 409 and "under way" in response.json()["detail"]
    assert client.app.state.runner.started == []


def test_a_web_without_an_engine_refuses_a_repin_and_says_where_to_run_it(site):
    """With workers (a broker), the web runs no container, and a re-pin's dry run runs where it
    is asked: refused, before anything is pinned or forgotten, with the command to use."""
    client, attack = site
    client.app.state.runner.has_engine = False
    response = client.post(f"/api/submissions/{attack}/repin", headers=ORGANIZER)
    assert response.status_code == 409 and "arena submissions repin" in response.json()["detail"]
    assert client.app.state.runner.started == []


def test_the_page_rerun_takes_the_dataset_like_the_api(site):
    """The page took the newest dataset whatever page it was posted from."""
    client, attack = site
    runner = client.app.state.runner
    browser = _as_organizer_in_a_browser(client)
    assert 'name="dataset" value="first"' in browser.get(f"/submissions/{attack}?dataset=first").text
    page = browser.post(f"/submissions/{attack}/rerun", data={"dataset": "first", "confirmed": "true"},
                        follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == f"/submissions/{attack}?dataset=first"
    newest = browser.post(f"/submissions/{attack}/rerun", data={"confirmed": "true"}, follow_redirects=False)
    assert newest.status_code == 303  # the newest
    api = client.post(f"/api/submissions/{attack}/rerun?dataset=first", headers=ORGANIZER)
    assert api.status_code == 202 and api.json() == {"started": True, "dataset": "first"}
    assert runner.started == ["first", "second", "first"]
    _is_error_page(browser.post(f"/submissions/{attack}/rerun", data={"dataset": "nope"}), 404,
                   "no dataset named &#39;nope&#39;")


@pytest.mark.parametrize(("api", "page", "sentence"), [
    (("patch", "/api/tournament", {"json": {"title": "   "}}),
     ("/organizer/settings", {"title": "   "}), "the title must be 1 to 200 characters"),
    (("post", "/api/submissions/{attack}/disqualify", {"json": {"reason": "   "}}),
     ("/submissions/{attack}/disqualify", {"reason": "   "}), "say why the submission is disqualified"),
    (("post", "/api/teams/%20%20/token", {}),
     ("/organizer/teams", {"team": "  "}), "a team name must be 1 to 200 characters"),
])
def test_a_domain_input_error_is_422_json_on_the_api_and_an_error_page_on_pages(site, api, page, sentence):
    client, attack = site
    method, url, body = api
    response = client.request(method, url.format(attack=attack), headers=ORGANIZER, **body)
    assert response.status_code == 422 and response.json() == {"detail": sentence}
    url, form = page
    _is_error_page(_as_organizer_in_a_browser(client).post(url.format(attack=attack), data=form), 422, sentence)


@pytest.mark.parametrize("error", [InputError("bad input"), NotFoundError("no such thing"),
                                   ConflictError("not now"), PlatformError("no Docker engine")])
def test_every_kind_of_arena_error_gets_its_status_on_both_sides(site, monkeypatch, error):
    client, _ = site

    def fail(*args):
        raise error

    monkeypatch.setattr(actions, "start_run", fail)
    response = client.post("/api/runs", headers=ORGANIZER)
    assert response.status_code == error.status and response.json() == {"detail": str(error)}
    _is_error_page(_as_organizer_in_a_browser(client).post("/organizer/run"), error.status, str(error))


def _described(schema: dict) -> bool:
    """A named model, a list or mapping of one, or one of several such (``/api/matrix``
    answers the batch or the query track's matrix): not an empty or open schema."""
    if options := schema.get("anyOf") or schema.get("oneOf"):
        return all(map(_described, options))
    inner = schema.get("items") or schema.get("additionalProperties")
    return "$ref" in schema or (isinstance(inner, dict) and "$ref" in inner)


def test_every_api_operation_declares_what_it_answers(site):
    """/openapi.json had no response schema but open objects."""
    client, _ = site
    paths = client.get("/openapi.json").json()["paths"]
    operations = [(method, path, op) for path, ops in paths.items() for method, op in ops.items()]
    assert operations and all(path.startswith("/api/") for _, path, _ in operations)
    for method, path, op in operations:
        success = next(body for status, body in op["responses"].items() if status.startswith("2"))
        content = success["content"]
        if "application/json" in content:
            assert _described(content["application/json"]["schema"]), (method, path)
        else:
            assert set(content) <= {"image/png", "text/csv"} and content, (method, path)
        assert op["responses"]["4XX"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    cached = {path: paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
              for path in ("/api/leaderboards/{track}", "/api/matrix")}
    assert cached["/api/leaderboards/{track}"]["items"] == {"$ref": "#/components/schemas/LeaderboardRow"}
    assert cached["/api/matrix"]["anyOf"] == [{"$ref": "#/components/schemas/Matrix"},
                                              {"$ref": "#/components/schemas/QueryMatrix"}]


def test_the_bytes_served_from_the_cache_match_their_declared_models(site):
    """The leaderboards and the matrix bypass FastAPI's validation: check them against their models."""
    client, _ = site
    for track in ("defense", "attack", "targeted_attack"):
        TypeAdapter(list[LeaderboardRow]).validate_json(client.get(f"/api/leaderboards/{track}").content, strict=True)
    Matrix.model_validate_json(client.get("/api/matrix?top_attacks=1").content, strict=True)


def test_the_runner_forgets_a_submission_only_when_its_run_starts(settings):
    """A re-run's forgetting happens under the runner's lock: with a run under way, nothing
    is forgotten (it used to be checked first and forgotten after, leaving a window)."""
    from arena.web.runner import TournamentRunner

    runner, forgotten = TournamentRunner(settings), []
    runner.state.running = True
    assert not runner.start("any", first=lambda: forgotten.append(True))
    assert forgotten == []


def test_the_run_says_which_dataset_and_its_own_count_apart_from_the_whole(settings):
    """The bar read "40 of 51 jobs done — 2/13 jobs…" (two counts, one wording) and the
    organizer's "last run" line did not name its round."""
    from arena.web.runner import TournamentRunner

    runner = TournamentRunner(settings)
    runner.state.dataset = "dev"
    runner._progress(2, 13, "attack A at eps 4")
    assert runner.state.message == "this run on dev: 2 of its 13 jobs; last: attack A at eps 4"


def test_the_last_run_line_names_its_round(site):
    """Issue 30, finding 9: the line named the dataset only ("last run, on final-images"),
    which is not what the organizer calls the round."""
    from arena.competition import rounds

    client, _attack = site
    with transaction(client.app.state.settings) as session:
        rounds.find(session, "second").name = "final"
    state = client.app.state.runner.state
    state.dataset, state.outcome = "second", "3 jobs done"
    page = _as_organizer_in_a_browser(client).get("/organizer").text
    assert '<p id="run-state">last run on round final (dataset second): 3 jobs done' in page
    state.dataset = "first"  # a round named as its dataset is named once
    assert '<p id="run-state">last run on round first: 3 jobs done' in client.get("/organizer").text


def test_the_container_runs_shown_are_whole_and_their_counts_never_go_down(site):
    """Issue 30, finding 9: the page kept the newest attempts (a limit on rows), then grouped
    them into container runs, so the oldest run shown had only some of its jobs, and its
    "jobs in run" fell (20, then 10) as a newer run pushed the cut along. The attempts are
    stored as a run stores them: one claim of a 20-job pack at a time."""
    from arena.callers import ORGANIZER as organizer
    from arena.execution import leases
    from arena.models import AttackJob, Batch, Dataset, JobKind
    from arena.web import queries

    client, attack_id = site
    settings = client.app.state.settings
    with transaction(settings) as session:
        dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == "second"))
        batch_id = session.scalar(select(Batch.id).where(Batch.dataset_id == dataset_id))
        jobs = [AttackJob(submission_id=attack_id, batch_id=batch_id, epsilon=eps) for eps in range(1, 81)]
        session.add_all(jobs)
        session.flush()
        job_ids = [job.id for job in jobs]
    seen: dict[int, int] = {}
    for step, first in enumerate(range(0, 80, 20), start=1):
        leases.claim(settings, JobKind.ATTACK, tuple(job_ids[first:first + 20]))
        with transaction(settings) as session:
            attack = session.get(Submission, attack_id)
            for limit in (2, 30):  # a cut inside a run (old: attempts), and none
                shown = queries.container_runs(queries.attempts(session, attack, organizer, [dataset_id], limit))
                assert len(shown) == min(step, limit)
                assert all(len(run["job_ids"]) == run["pack_jobs"] == 20 for run in shown), shown
            for run in shown:
                assert len(run["job_ids"]) >= seen.get(run["run_id"], 0)
                seen[run["run_id"]] = len(run["job_ids"])
    page = client.get(f"/submissions/{attack_id}?dataset=second", headers=ORGANIZER).text
    assert page.count("<td>20</td>") == 4


def test_the_upload_page_lists_the_team_s_uploads_waiting_for_their_dry_run(site):
    """A team sees its own queued uploads there (organizers: everyone's), never another team's."""
    client, _attack = site
    with transaction(client.app.state.settings) as session:
        for team, name in (("red", "red-waiting"), ("blue", "blue-waiting")):
            owner = session.scalar(select(Team).where(Team.name == team)) or Team(name=team)
            session.add(Submission(team=owner, name=name, kind=SubmissionKind.DEFENSE, sha256=name[0] * 64,
                                   status=SubmissionStatus.QUEUED, meta={}))
    red = client.post("/api/teams/red/token", headers=ORGANIZER).json()["token"]
    as_red = client.get("/upload", headers={"Authorization": f"Bearer {red}"})
    assert 'id="waiting-uploads"' in as_red.text and "red-waiting" in as_red.text
    assert "blue-waiting" not in as_red.text and "red-attack" not in as_red.text  # accepted: not waiting
    as_organizer = client.get("/upload", headers=ORGANIZER).text
    assert "red-waiting" in as_organizer and "blue-waiting" in as_organizer


def test_an_upload_holds_no_database_connection_while_it_works(site, monkeypatch):
    """The caller was identified in the request's own session, held until the answer, while
    the upload opened its own: two connections per upload, and thirty uploads at once took
    the pool's fifteen and waited on each other for 30 s (bench/upload_burst.py)."""
    from arena.db import get_engine

    client, _attack = site
    pool = get_engine(client.app.state.settings.resolved_database_url).pool
    held: list[int] = []

    def upload(*_args, **_kwargs):
        held.append(pool.checkedout())
        raise InputError("stopped here")

    red = client.post("/api/teams/red/token", headers=ORGANIZER).json()["token"]  # a team's is looked up
    monkeypatch.setattr(actions, "upload", upload)
    response = client.post("/api/submissions", headers={"Authorization": f"Bearer {red}"},
                           files={"archive": ("a.tar.gz", b"x")})
    assert response.status_code == 422 and held == [0]


def test_an_organizer_upload_for_an_unknown_team_asks_for_the_tick(site):
    """The upload form made a team of any name an organizer typed (a typo made a new team); the
    token form asked. Now both refuse an unknown name unless "create the team" is ticked."""
    client, _attack = site
    organizer = _as_organizer_in_a_browser(client)
    archive = {"archive": ("a.tar.gz", b"not an archive")}
    refused = organizer.post("/upload", files=archive, data={"team": "rde"})
    _is_error_page(refused, 404, "no team named “rde”; tick “create the team” to create it")
    ticked = organizer.post("/upload", files=archive, data={"team": "rde", "create": "true"})
    assert ticked.status_code == 422  # past the team: the archive is what is refused now
    known = organizer.post("/upload", files=archive, data={"team": "red"})
    assert known.status_code == 422
    with transaction(client.app.state.settings) as session:
        assert session.scalar(select(Team).where(Team.name == "rde")) is None  # nothing stored either way


def test_a_submission_carries_its_team_s_description_to_its_page(site, tmp_path):
    """Teams could say nothing of what they uploaded; now a description (plain text, escaped,
    2000 characters at most) is kept and shown. No dry run here: the checker is told nothing."""
    from arena.intake.archive import pack
    from conftest import SAMPLES

    client, _attack = site
    client.app.state.checker = type("Idle", (), {"wake": lambda self: None})()
    red = {"Authorization": f"Bearer {client.post('/api/teams/red/token', headers=ORGANIZER).json()['token']}"}
    archive = pack(SAMPLES / "noop", tmp_path / "noop.tar.gz")
    too_long = client.post("/api/submissions", headers=red, files={"archive": archive.read_bytes()},
                           data={"description": "x" * 2001})
    assert too_long.status_code == 422 and "2000 characters" in too_long.text
    answer = client.post("/api/submissions", headers=red, files={"archive": ("noop.tar.gz", archive.read_bytes())},
                         data={"description": "  Copies the input.\n<b>Nothing</b> else.  ", "round": "second"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["description"] == "Copies the input.\n<b>Nothing</b> else."
    page = client.get(f"/submissions/{answer.json()['id']}", headers=red).text
    assert '<p class="description" id="description">Copies the input.\n&lt;b&gt;Nothing&lt;/b&gt; else.</p>' in page
