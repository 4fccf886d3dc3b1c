"""A competition in two rounds through the real parts: the ``arena`` command, the REST API,
real sample submissions dry-run and run in Docker containers, and SQLite."""

import json
import shutil

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.cli import app
from arena.competition import entries, rounds
from arena.config import get_settings
from arena.db import transaction
from arena.intake.archive import pack
from arena.models import AttackJob, Batch, Dataset, Submission
from arena.web.app import create_app
from conftest import SAMPLES
from factories import variant

TOKEN = "organizer-secret"
ORGANIZER = {"Authorization": f"Bearer {TOKEN}"}
DRY_RUN_SECONDS = 300  # a deadline, never a wait: the checker ends as soon as it is done
cli = CliRunner()


def arena(*args: str) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _attack_jobs_on(settings, dataset: str) -> int:
    with transaction(settings) as session:
        return session.scalar(select(func.count(AttackJob.id)).join(Batch, AttackJob.batch_id == Batch.id)
                              .join(Dataset, Batch.dataset_id == Dataset.id).where(Dataset.name == dataset))


@pytest.fixture
def competition(tmp_path, monkeypatch):
    """A fresh data directory with round "dev" on 4 synthetic images, eps 4 and 16, at most one
    upload per team and track a day; the organizer's web client; team red's token."""
    monkeypatch.setenv("ARENA_DATA_DIR", str(tmp_path / "arena"))
    monkeypatch.setenv("ARENA_ORGANIZER_TOKEN", TOKEN)
    monkeypatch.setenv("ARENA_BATCH_SIZE", "2")
    monkeypatch.setenv("ARENA_SANDBOX_MEMORY", "512m")
    monkeypatch.setenv("ARENA_ALLOWED_HOSTS", "testserver")  # TestClient's host name
    get_settings.cache_clear()
    arena("db", "upgrade")
    arena("dataset", "synth", "4", "--name", "dev-images", "--round", "dev")
    arena("round", "set", "dev", "--daily-quota", "1")
    settings = get_settings()
    with transaction(settings) as session:  # the round's own epsilons, not the settings'
        rounds.find(session, "dev").epsilons = [4, 16]
    client = TestClient(create_app(settings))
    token = client.post("/api/teams/red/token", headers=ORGANIZER).json()["token"]
    yield settings, client, {"Authorization": f"Bearer {token}"}
    get_settings.cache_clear()


def _upload(client, headers, folder, tmp_path, name: str):
    """The upload's answer (202 once stored and queued), once the web's background checker
    has done the dry runs it woke it for (the embedded mode: no broker)."""
    archive = pack(folder, tmp_path / f"{name}.tar.gz")
    with archive.open("rb") as body:
        answer = client.post("/api/submissions", files={"archive": (archive.name, body)}, data={"name": name},
                             headers=headers)
    client.app.state.checker.join(DRY_RUN_SECONDS)
    return answer


def _status(client, headers, answer) -> str:
    return client.get(f"/api/submissions/{answer.json()['id']}", headers=headers).json()["status"]


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_two_rounds_with_quota_carry_counting_and_publication(competition, tmp_path):
    settings, client, red = competition

    # A dry run the platform could not run (its image is not on the engine) leaves the upload
    # queued, to be tried again, and uses no quota meanwhile.
    broken = tmp_path / "broken"
    shutil.copytree(SAMPLES / "noop", broken)
    meta = json.loads((broken / "metadata.json").read_text())
    (broken / "metadata.json").write_text(json.dumps({**meta, "container": "arena/not-built:here"}))
    failed = _upload(client, red, broken, tmp_path, "broken")
    assert failed.status_code == 202 and failed.json()["status"] == "queued", failed.text
    seen = client.get(f"/api/submissions/{failed.json()['id']}", headers=red)
    assert seen.json()["status"] == "queued" and "Docker engine" not in seen.text  # the engine's words: organizers' log
    first = _upload(client, red, SAMPLES / "noop", tmp_path, "noop")
    assert first.status_code == 202 and first.json()["page"] == f"/submissions/{first.json()['id']}", first.text
    assert _status(client, red, first) == "accepted"
    report = client.get(f"/api/submissions/{first.json()['id']}", headers=red).json()["validation_report"]
    assert report["time_limit"] == pytest.approx(settings.seconds_per_image * report["images"])

    # The second attack of the day is refused with when to come back; another track has its own quota.
    again = _upload(client, red, variant(SAMPLES / "noop", tmp_path, "noop2"), tmp_path, "noop2")
    assert again.status_code == 429 and "1 attack uploads of the last 24 hours" in again.json()["detail"]
    assert 86000 < int(again.headers["Retry-After"]) <= 86400
    decoder = _upload(client, red, SAMPLES / "decoder", tmp_path, "decoder")
    assert decoder.status_code == 202 and _status(client, red, decoder) == "accepted"
    with transaction(settings) as session:  # the two accepted, and the one the platform could not check
        assert session.scalar(select(func.count(Submission.id))) == 3
    rounds_seen = {r["name"]: r for r in client.get("/api/rounds", headers=red).json()}
    assert rounds_seen["dev"]["uploads_left"] == {"attack": 0, "targeted_attack": 1, "defense": 0, "query_attack": 1,
                                                  "query_targeted": 1}
    assert rounds_seen["dev"]["state"] == "open" and rounds_seen["dev"]["epsilons"] == [4, 16]

    # Round dev runs at its own epsilons, in real containers.
    arena("run", "--dataset", "dev-images")
    with transaction(settings) as session:
        epsilons = set(session.scalars(select(AttackJob.epsilon)))
    assert epsilons == {4, 16}
    dev_jobs = _attack_jobs_on(settings, "dev-images")
    board = client.get("/api/leaderboards/defense?dataset=dev-images").json()
    assert [row["submission"] for row in board] == ["decoder"] and board[0]["scored"] > 0

    # The final round, on images of its own: the counting entries are carried, not uploaded again.
    arena("dataset", "synth", "2", "--name", "final-images", "--seed", "7", "--round", "final")
    carried = client.post("/api/rounds/final/carry", json={"counting_from": "dev"}, headers=ORGANIZER)
    assert carried.status_code == 200 and sorted(carried.json()["carried"]) == ["decoder", "noop"]
    assert client.post("/api/rounds/final/carry", json={"counting_from": "dev"}, headers=red).status_code == 403
    arena("run", "--dataset", "final-images")
    assert _attack_jobs_on(settings, "dev-images") == dev_jobs  # nothing of dev ran again
    assert _attack_jobs_on(settings, "final-images") == 1 * 4  # one batch of 2 at the settings' four epsilons
    final_board = client.get("/api/leaderboards/defense?dataset=final-images").json()
    assert [row["submission"] for row in final_board] == ["decoder"] and final_board[0]["scored"] > 0

    # Publishing freezes dev: no more uploads there; the CLI lists the state.
    published = client.post("/api/rounds/dev/publish", headers=ORGANIZER)
    assert published.status_code == 200 and published.json()["visibility"] == "published"
    late = client.post("/api/submissions", files={"archive": ("x.tar.gz", b"x")}, data={"round": "dev"}, headers=red)
    assert late.status_code == 403 and "published" in late.json()["detail"]
    targeted = _upload(client, red, SAMPLES / "step_to_target", tmp_path, "target")  # the open round now: final
    assert targeted.status_code == 202 and _status(client, red, targeted) == "accepted", targeted.text
    with transaction(settings) as session:
        final = rounds.find(session, "final")
        assert targeted.json()["id"] in entries.accepted(session, final.dataset_id)
    listing = arena("round", "list")
    assert "published" in listing and "final" in listing
