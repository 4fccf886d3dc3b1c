"""Pinned images and the determinism probe, through a real engine.

A submission runs the image its tag named at intake, whatever the tag names later; a moved
tag is shown (CLI, API, page) and re-pinning takes the new image and re-runs the submission;
a host without the pinned image fails the run with an error saying so, never running the tag.
The dry run runs its batch twice: a random defense or attack is flagged with the share of
images that differed, a deterministic one is not, and the flag reaches the leaderboards.
"""

import uuid
from pathlib import Path

import pandas as pd
import pytest
from docker.errors import ImageNotFound
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

import test_web_tournament
from arena.cli import app as cli
from arena.config import Settings, get_settings
from arena.db import transaction
from arena.execution import pack_run
from arena.execution.run import run
from arena.models import (
    Classification,
    Dataset,
    DefenseJob,
    JobAttempt,
    JobStatus,
    Submission,
    SubmissionKind,
    SubmissionStatus,
)
from arena.results.export import export
from arena.results.scoring import Standings
from arena.sandbox import pinning
from arena.sandbox.code import StoredSubmission
from arena.sandbox.containers import SandboxError, docker_client
from arena.web.app import create_app
from conftest import SAMPLES, make_settings
from factories import add_submission, submit_folder, synth_dataset, write_submission
from test_web_tournament import _log_in
from web_server import live_server

browser = test_web_tournament.browser  # Chromium, the web tests' fixture

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

TOKEN = "organizer-secret"
ORGANIZER = {"Authorization": f"Bearer {TOKEN}"}

#: Answers, for every image, the label written in its image's /label file.
LABEL_DEFENSE = '#!/bin/sh\nlabel=$(cat /label)\nfor f in "$1"/*.png; do echo "$(basename "$f"),$label"; done > "$2"\n'

RANDOM_DEFENSE = """
import os, random, sys
with open(sys.argv[2], "w") as out:
    for name in sorted(os.listdir(sys.argv[1])):
        out.write(f"{name},{random.randint(1, 1000)}\\n")
"""

RANDOM_ATTACK = """
import os, sys
import numpy as np
from PIL import Image
inputs, outputs, eps = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name in sorted(os.listdir(inputs)):
    pixels = np.asarray(Image.open(os.path.join(inputs, name)).convert("RGB")).astype(np.int16)
    signs = np.random.default_rng().integers(0, 2, size=pixels.shape) * 2 - 1  # seeded by the OS: new each run
    Image.fromarray(np.clip(pixels + eps * signs, 0, 255).astype(np.uint8)).save(os.path.join(outputs, name))
"""


@pytest.fixture
def small(tmp_path) -> Settings:
    settings = make_settings(tmp_path / "arena", seconds_per_image=5.0, epsilons=[16], organizer_token=TOKEN)
    synth_dataset(settings, 10, batch_size=10)
    return settings


@pytest.fixture
def cli_env(small, monkeypatch):
    """The ``arena`` command on ``small``'s data folder."""
    for name, value in (("DATA_DIR", str(small.data_dir)), ("EPSILONS", "16"), ("SECONDS_PER_IMAGE", "5")):
        monkeypatch.setenv(f"ARENA_{name}", value)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.fixture
def own_tag(tmp_path):
    """A tag of this test's own and a builder of images under it, each holding ``/label``;
    the tag and every image built are removed at the end, whatever happened."""
    tag = f"arena-test/pinning-{uuid.uuid4().hex[:12]}:latest"
    built: list[str] = []

    def build(label: int) -> str:
        context = tmp_path / f"image-{label}"
        context.mkdir()
        (context / "label").write_text(f"{label}\n")
        (context / "Dockerfile").write_text("FROM arena/python:bookworm\nCOPY label /label\n")
        image, _log = docker_client().images.build(path=str(context), tag=tag, rm=True)
        built.append(image.id)
        return image.id

    yield tag, build
    for image_id in reversed(built):
        try:
            docker_client().images.remove(image_id, force=True)
        except ImageNotFound:
            pass


def _labels(settings: Settings, submission_id: int) -> set[int]:
    with transaction(settings) as session:
        return set(session.scalars(select(Classification.label).where(Classification.defense_id == submission_id)))


def _images_run(settings: Settings) -> set[str]:
    with transaction(settings) as session:
        return set(session.scalars(select(JobAttempt.container_image)))


@pytest.fixture
def moved(small, own_tag, tmp_path):
    """A defense taken in on image 1 of ``own_tag``, which then names image 2: (its id, image 1, image 2)."""
    tag, build = own_tag
    first = build(1)
    folder = write_submission(tmp_path / "labeller", {"type": "defense", "container": tag, "entry_point": "run.sh"},
                              {"run.sh": LABEL_DEFENSE})
    defense = submit_folder(small, folder, tmp_path)
    assert defense.status is SubmissionStatus.ACCEPTED, defense.reason
    assert defense.container_image == first
    second = build(2)
    assert second != first
    return defense.id, first, second


def test_a_moved_tag_is_not_followed_it_is_shown_and_a_repin_reruns(small, moved, own_tag, cli_env):
    defense_id, first, second = moved
    tag, _build = own_tag
    assert run(small).platform_errors == []
    assert _labels(small, defense_id) == {1} and _images_run(small) == {first}  # the pinned image ran, not the tag's

    shown = cli_env.invoke(cli, ["submissions", "images"])
    assert shown.exit_code == 1 and "drifted" in shown.output and "labeller" in shown.output, shown.output
    client = TestClient(create_app(small))
    [image] = client.get(f"/api/submissions/{defense_id}").json()["images"]
    assert image == {"field": "container", "tag": tag, "pinned": first, "current": second, "state": "drifted"}
    page = client.get(f"/submissions/{defense_id}", headers=ORGANIZER).text
    assert "drift-container" in page and second in page and "/repin" in page

    repinned = cli_env.invoke(cli, ["submissions", "repin", "labeller"])
    assert repinned.exit_code == 0 and second in repinned.output, repinned.output
    assert _labels(small, defense_id) == {2}
    assert _images_run(small) == {second}  # the first image's attempts went with the forgotten jobs
    assert cli_env.invoke(cli, ["submissions", "images"]).exit_code == 0
    again = cli_env.invoke(cli, ["submissions", "repin", "labeller"])
    assert again.exit_code == 1 and "nothing to re-pin" in again.output


def test_a_repin_through_the_api_reruns_and_a_failing_dry_run_changes_nothing(small, moved, own_tag):
    defense_id, _first, second = moved
    _tag, build = own_tag
    client = TestClient(create_app(small))
    assert run(small).platform_errors == [] and _labels(small, defense_id) == {1}
    confirm = client.post(f"/submissions/{defense_id}/repin", headers=ORGANIZER, data={"dataset": "synthetic"})
    assert "Re-pin labeller?" in confirm.text and "dry run" in confirm.text
    assert _labels(small, defense_id) == {1}  # asking is not doing

    answer = client.post(f"/api/submissions/{defense_id}/repin", headers=ORGANIZER)
    assert answer.status_code == 202, answer.text
    client.app.state.runner.join(timeout=300)
    assert not client.app.state.runner.state.running and client.app.state.runner.state.errors == []
    assert _labels(small, defense_id) == {2} and _images_run(small) == {second}

    build(0)  # label 0 is no class: the dry run with this image fails
    refused = client.post(f"/api/submissions/{defense_id}/repin", headers=ORGANIZER)
    assert refused.status_code == 422 and "nothing was changed" in refused.json()["detail"]
    with transaction(small) as session:
        assert session.get(Submission, defense_id).container_image == second
    assert _labels(small, defense_id) == {2}


def test_the_browser_shows_a_moved_tag_and_a_repin_from_the_page_reruns(small, moved, browser):
    defense_id, _first, second = moved
    assert run(small).platform_errors == [] and _labels(small, defense_id) == {1}
    app = create_app(small)
    with live_server(app) as url:
        page = browser.new_page()
        page.set_default_timeout(120_000)
        _log_in(page, url, TOKEN)
        page.goto(f"{url}/submissions/{defense_id}")
        assert second in page.inner_text("#drift-container") and "drifted" in page.inner_text("#image-container")
        page.click("text=Re-pin to the tags")
        page.wait_for_selector("#confirm-heading")
        assert page.inner_text("#confirm-heading") == "Re-pin labeller?"
        page.click("#confirm")  # the dry run with the new image, then the run starts
        page.wait_for_url(f"{url}/submissions/{defense_id}?dataset=synthetic")
        app.state.runner.join(timeout=300)
        assert app.state.runner.state.errors == [] and _labels(small, defense_id) == {2}
        page.reload()
        assert page.query_selector("#drift-container") is None and second[:19] in page.inner_text("#image-container")
        page.close()


def test_a_host_without_the_pinned_image_fails_clearly_and_an_unpinned_submission_is_pinned_by_its_run(small, tmp_path):
    defense = submit_folder(small, SAMPLES / "decoder", tmp_path)
    pinned = defense.container_image
    assert pinned == docker_client().images.get("arena/python:bookworm").id
    elsewhere = "sha256:" + "f" * 64  # what a worker host that built its own images would lack
    with transaction(small) as session:
        session.execute(update(Submission).values(container_image=elsewhere))
    summary = run(small)
    assert summary.platform_errors and all("does not hold" in e and "docker load" in e for e in summary.platform_errors)
    with transaction(small) as session:
        assert set(session.scalars(select(DefenseJob.status))) == {JobStatus.ERROR}
        assert session.scalar(select(Classification.defense_job_id)) is None

    with transaction(small) as session:  # a submission taken in before pinning existed
        session.execute(update(Submission).values(container_image=None))
    assert run(small).platform_errors == []
    with transaction(small) as session:
        assert session.get(Submission, defense.id).container_image == pinned
        done = session.scalars(select(JobAttempt.container_image).where(JobAttempt.error.is_(None)))
        assert set(done) == {pinned}
        export(session, session.scalar(select(Dataset)), tmp_path / "bundle")
    [row] = pd.read_csv(tmp_path / "bundle" / "submissions.csv").to_dict("records")
    assert (row["submission"], row["code_sha256"], row["container_image"]) == ("decoder", defense.sha256, pinned)
    assert row["images_run"] == pinned and row["nondeterministic_share"] == 0


def test_intake_pins_a_gpu_image_only_where_it_is_and_the_first_gpu_run_pins_it_otherwise(small):
    python = docker_client().images.get("arena/python:bookworm").id
    absent = f"arena-test/absent-{uuid.uuid4().hex[:12]}:gpu"
    assert pinning.pin({"container": "arena/python:bookworm", "container_gpu": absent}) == {"container": python}
    assert pinning.pin({"container": "arena/python:bookworm", "container_gpu": "arena/python:bookworm"}) == \
        {"container": python, "container_gpu": python}
    on_gpu = small.model_copy(update={"sandbox": small.sandbox.model_copy(update={"gpu": True})})
    meta = {"type": "defense", "container": absent, "container_gpu": "arena/python:bookworm", "entry_point": "run.sh"}
    with transaction(small) as session:
        submission = add_submission(session, "gpu-only", SubmissionKind.DEFENSE, meta=meta)
        submission.container_image = "sha256:" + "c" * 64
        stored = StoredSubmission.of(submission)
    assert pack_run.submission_code(on_gpu, stored).image(gpu=True) == python
    with transaction(small) as session:
        assert session.scalar(select(Submission.container_gpu_image)) == python
        stored = StoredSubmission.of(session.scalar(select(Submission)))
    with pytest.raises(SandboxError, match="does not hold"):  # the CPU image is pinned, but not here
        pack_run.submission_code(small, stored)


def _submit(settings: Settings, tmp_path: Path, name: str, kind: str, script: str):
    entry = "run_defense.sh" if kind == "defense" else "run_attack.sh"
    folder = write_submission(tmp_path / name, {"type": kind, "container": "arena/python:bookworm", "entry_point": entry},
                              {entry: '#!/bin/sh\nexec python3 code.py "$@"\n', "code.py": script})
    return submit_folder(settings, folder, tmp_path)


def test_random_defenses_and_attacks_are_flagged_deterministic_ones_are_not(small, tmp_path):
    flagged = [_submit(small, tmp_path, "dice", "defense", RANDOM_DEFENSE),
               _submit(small, tmp_path, "jitter", "attack", RANDOM_ATTACK)]
    steady = [submit_folder(small, SAMPLES / "decoder", tmp_path), submit_folder(small, SAMPLES / "random_noise", tmp_path)]
    for submission in flagged + steady:
        assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
        probe = submission.validation_report["determinism"]
        assert probe["images"] == 10 and probe["seconds"] > 0
        assert submission.nondeterministic_share == probe["share"] == probe["differing"] / 10
    assert all(s.nondeterministic_share > 0 for s in flagged), [s.validation_report["determinism"] for s in flagged]
    assert all(s.nondeterministic_share == 0 for s in steady)

    with transaction(small) as session:
        standings = Standings.compute(session, session.scalar(select(Dataset)))
        boards = {**standings.defense_leaderboard().set_index("submission")["nondeterministic"],
                  **standings.attack_leaderboard().set_index("submission")["nondeterministic"]}
    assert boards["dice"] > 0 and boards["jitter"] > 0 and boards["decoder"] == 0 and boards["random_noise"] == 0
    client = TestClient(create_app(small))
    rows = {row["submission"]: row for row in client.get("/api/leaderboards/defense").json()}
    assert rows["dice"]["nondeterministic"] > 0 and rows["decoder"]["nondeterministic"] == 0
    page = client.get("/").text
    assert page.count("non-deterministic") >= 2  # the dice and jitter rows (and the legend)
    dice = client.get(f"/submissions/{flagged[0].id}").text
    assert 'id="determinism"' in dice and "non-deterministic" in dice
    assert "non-deterministic" not in client.get(f"/submissions/{steady[0].id}").text



def test_what_a_check_says_of_each_pin(monkeypatch):
    python = docker_client().images.get("arena/python:bookworm").id
    absent = f"arena-test/absent-{uuid.uuid4().hex[:12]}:1"
    cases = [(("arena/python:bookworm", python), "pinned"), (("arena/python:bookworm", "sha256:" + "e" * 64), "drifted"),
             ((absent, python), "tag missing"), (("arena/python:bookworm", None), "unpinned")]
    for image, state in cases:
        [check] = pinning.check({"container": image})
        assert (check.state.value, check.pinned, check.tag) == (state, image[1], image[0])

    def no_engine():
        raise SandboxError("no Docker engine answers")

    monkeypatch.setattr(pinning, "docker_client", no_engine)
    assert [c.state.value for c in pinning.check({"container": ("arena/python:bookworm", python)})] == ["unknown"]
