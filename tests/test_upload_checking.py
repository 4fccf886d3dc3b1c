"""Uploads answered at once: the web stores an upload and queues its dry run, and never needs
a Docker engine; a runner with an engine checks it (issue: uploads as jobs)."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from arena.cli import app
from arena.competition import quotas
from arena.config import get_settings
from arena.db import transaction
from arena.intake.archive import pack
from arena.models import DryRun, JobStatus, Round, Submission, SubmissionStatus
from conftest import SAMPLES, make_settings, wait_until
from factories import synth_dataset
from servers import free_port, stop

ARENA = Path(sys.executable).parent / "arena"
TOKEN = "organizer-secret"


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_a_web_with_no_engine_takes_an_upload_and_a_runner_with_one_checks_it(tmp_path, monkeypatch):
    settings = make_settings(tmp_path / "arena")
    synth_dataset(settings, 10, batch_size=10)
    port = free_port()
    env = {**os.environ, "ARENA_DATA_DIR": str(settings.data_dir), "ARENA_ORGANIZER_TOKEN": TOKEN,
           "DOCKER_HOST": f"unix://{tmp_path}/no-engine-here.sock"}  # nothing answers there
    log = tmp_path / "web.log"
    web = subprocess.Popen([str(ARENA), "web", "--port", str(port)], env=env, stdin=subprocess.DEVNULL,
                           stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), 60, "arena web to answer")
        archive = pack(SAMPLES / "noop", tmp_path / "noop.tar.gz")
        with archive.open("rb") as body:
            answer = httpx.post(f"{url}/api/submissions", files={"archive": (archive.name, body)},
                                data={"team": "red"}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert answer.status_code == 202 and answer.json()["status"] == "queued", answer.text
        submission_id = answer.json()["id"]

        def tried_once() -> bool:  # the web's own checker tried, and met no engine
            with transaction(settings) as session:
                return session.scalar(select(DryRun.status).where(DryRun.submission_id == submission_id)) \
                    is JobStatus.ERROR
        wait_until(tried_once, 60, "the web's checker to meet no engine")
        shown = httpx.get(f"{url}/api/submissions/{submission_id}", timeout=30).json()
        assert shown["status"] == "queued" and shown["queue_place"] == 1
        assert _uploads_counted(settings, submission_id) == 0  # the platform's failure costs the team nothing
    finally:
        stop(web)

    monkeypatch.setenv("ARENA_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["run"])  # a runner with the engine: uploads are checked first
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    with transaction(settings) as session:
        submission = session.get(Submission, submission_id)
        assert submission.status is SubmissionStatus.ACCEPTED and submission.container_image.startswith("sha256:")
        assert submission.dry_run.status is JobStatus.DONE and submission.dry_run.attempt == 2
    assert _uploads_counted(settings, submission_id) == 1


def _uploads_counted(settings, submission_id: int) -> int:
    """How many uploads of the submission's team and track count against its quota."""
    with transaction(settings) as session:
        submission = session.get_one(Submission, submission_id)
        return len(quotas.uploads(session, session.scalars(select(Round)).one(), submission.team, submission.kind))


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
