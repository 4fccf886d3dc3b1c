"""Submission images through a real container registry (Debian's docker-registry).

Intake pushes the image it checked and pins its registry digest; the pin is what the API,
the submission page, `arena submissions images` and the bundle manifest show; a host whose
engine lacks the image (a second, private dockerd) pulls it by that digest and runs it. A
digest the registry no longer has is a platform error naming it: the job is retried as after
any platform error, and nothing is blamed on the team; so is a registry intake cannot reach.

The images are a few megabytes (dash and libc, imported from a tar), not arena/python: its
230 MB take about 10 s to push and 7 s to pull here, these a fraction of a second.
"""

import io
import os
import re
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker.errors import ImageNotFound
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from arena.cli import app as cli
from arena.config import Settings, get_settings
from arena.db import transaction
from arena.execution.checking import DryRunUnavailable
from arena.execution.run import run
from arena.models import Classification, DefenseJob, JobAttempt, JobStatus, Round, Submission, SubmissionStatus
from arena.results import bundle
from arena.sandbox import pinning
from arena.sandbox.containers import docker_client
from arena.web.app import create_app
from conftest import make_settings
from factories import submit_folder, synth_dataset, write_submission
from servers import PrivateDockerd, RegistryServer, free_port, private_dockerd, registry_server

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

TOKEN = "organizer-secret"
#: The engine intake ran on (the tests' own, whatever DOCKER_HOST a test sets meanwhile).
DEFAULT_ENGINE = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
#: Answers, for every image, the label in its image's /label file: shell builtins only.
LABEL_DEFENSE = '#!/bin/sh\nread label < /label\nfor f in "$1"/*.png; do echo "${f##*/},$label"; done > "$2"\n'
#: What the images hold besides /label: a shell and what it links to.
SHELL_FILES = {"/bin/dash": "bin/sh", "/lib/x86_64-linux-gnu/libc.so.6": "lib/x86_64-linux-gnu/libc.so.6",
               "/lib64/ld-linux-x86-64.so.2": "lib64/ld-linux-x86-64.so.2"}


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("ARENA_REQUIRE_DOCKER"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    try:
        with registry_server() as server:
            yield server
    except RuntimeError as exc:
        _skip_or_fail(str(exc))


@pytest.fixture
def settings(tmp_path, registry) -> Settings:
    settings = make_settings(tmp_path / "arena", seconds_per_image=5.0, epsilons=[16], organizer_token=TOKEN,
                             registry=registry.address)
    synth_dataset(settings, 10, batch_size=10)
    return settings


@pytest.fixture
def labelled(tmp_path) -> Iterator[Callable[[int], str]]:
    """Makes tiny images of this test's own, each holding ``/label``, under a tag of its own;
    every one is removed at the end with all its tags (the registry's too), whatever happened."""
    made: list[str] = []

    def make(label: int) -> str:
        if not all(Path(source).exists() for source in SHELL_FILES):
            _skip_or_fail(f"this host lacks one of {list(SHELL_FILES)} to make a tiny image from")
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w", dereference=True) as archive:
            for source, name in SHELL_FILES.items():
                archive.add(source, arcname=name)
            text = f"{label}\n".encode()
            member = tarfile.TarInfo("label")
            member.size = len(text)
            archive.addfile(member, io.BytesIO(text))
        tag = f"arena-test/reg-{uuid.uuid4().hex[:8]}:{label}"
        repository, version = tag.split(":")
        docker_client().api.import_image_from_data(tar.getvalue(), repository=repository, tag=version)
        made.append(docker_client().images.get(tag).id)
        return tag

    yield make
    for image_id in made:
        try:
            docker_client().images.remove(image_id, force=True)
        except ImageNotFound:
            pass


@pytest.fixture
def elsewhere(tmp_path_factory) -> Iterator[PrivateDockerd]:
    """A second engine that holds no image: a worker host that was never given any."""
    try:
        with private_dockerd(tmp_path_factory.mktemp("dockerd"), []) as engine:
            yield engine
    except RuntimeError as exc:
        _skip_or_fail(str(exc))


def _take_in(settings: Settings, tmp_path: Path, tag: str) -> Submission:
    folder = write_submission(tmp_path / f"labeller-{tag.rsplit(':')[-1]}",
                              {"type": "defense", "container": tag, "entry_point": "run.sh"}, {"run.sh": LABEL_DEFENSE})
    defense = submit_folder(settings, folder, tmp_path)
    assert defense.status is SubmissionStatus.ACCEPTED, defense.reason
    return defense


def _shown(settings: Settings, defense: Submission, monkeypatch) -> None:
    """The pin the API, the page, the CLI and the bundle manifest show is the digest reference."""
    pin = defense.container_image
    client = TestClient(create_app(settings))
    [image] = client.get(f"/api/submissions/{defense.id}").json()["images"]
    assert (image["pinned"], image["current"], image["state"]) == (pin, pin, "pinned")
    assert pinning.short(pin) in client.get(f"/submissions/{defense.id}").text
    monkeypatch.setenv("ARENA_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        shown = CliRunner().invoke(cli, ["submissions", "images"])
    finally:
        get_settings.cache_clear()
    digest = pin.rpartition("@")[2]
    assert shown.exit_code == 0 and digest[:19] in shown.output and "pinned" in shown.output, shown.output
    assert f"in the registry {pin.split('/')[0]}" in shown.output
    with transaction(settings) as session:
        [entry] = bundle.manifest(session, settings, session.scalar(select(Round)))["submissions"]
    assert entry["container_image"] == pin


def test_intake_pins_the_registry_digest_and_a_host_without_the_image_pulls_it(settings, registry, labelled, tmp_path,
                                                                                  elsewhere, monkeypatch):
    tag = labelled(3)
    defense = _take_in(settings, tmp_path, tag)
    pin = defense.container_image
    repository = tag.split(":")[0]
    assert re.fullmatch(rf"{re.escape(registry.address)}/{repository}@sha256:[0-9a-f]{{64}}", pin), pin
    assert registry.has(pin)
    _shown(settings, defense, monkeypatch)

    checked = docker_client().images.get(tag).id
    monkeypatch.setenv("DOCKER_HOST", elsewhere.host)
    docker_client.cache_clear()
    try:
        assert not pinning.held(pin)
        assert run(settings).platform_errors == []
        assert docker_client().images.get(pin).id == checked  # the bytes intake checked, pulled by their digest
        with pytest.raises(ImageNotFound):
            docker_client().images.get(tag)  # never by the tag
    finally:
        monkeypatch.delenv("DOCKER_HOST")
        docker_client.cache_clear()
    with transaction(settings) as session:
        assert set(session.scalars(select(Classification.label))) == {3}
        assert set(session.scalars(select(JobAttempt.container_image))) == {pin}


def test_a_digest_the_registry_lost_is_a_platform_error_naming_it_and_retried(settings, registry, labelled, tmp_path,
                                                                             elsewhere, monkeypatch):
    defense = _take_in(settings, tmp_path, labelled(5))
    pin = defense.container_image
    registry.delete(pin)
    assert not registry.has(pin)

    monkeypatch.setenv("DOCKER_HOST", elsewhere.host)
    docker_client.cache_clear()
    try:
        for attempt in (1, 2):
            errors = run(settings).platform_errors
            assert errors and all(pin in e and "no longer has" in e for e in errors), errors
            with transaction(settings) as session:
                jobs = session.scalars(select(DefenseJob)).all()
                assert {(j.status, j.attempt) for j in jobs} == {(JobStatus.ERROR, attempt)}
                assert session.scalar(select(Classification.defense_job_id)) is None
                assert session.get(Submission, defense.id).status is SubmissionStatus.ACCEPTED  # not the team's fault
                failures = set(session.scalars(select(JobAttempt.error).where(JobAttempt.error.is_not(None))))
            assert failures and all(pin in f for f in failures), failures

        # the way out the error names: push it again from the host that holds it; the digest is the same
        pushed = subprocess.run(["docker", "-H", DEFAULT_ENGINE, "push", "--all-tags", pin.split("@")[0]],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert pushed.returncode == 0 and registry.has(pin), pushed.stderr
        assert run(settings).platform_errors == []
        with transaction(settings) as session:
            assert set(session.scalars(select(Classification.label))) == {5}
    finally:
        monkeypatch.delenv("DOCKER_HOST")
        docker_client.cache_clear()


def test_a_registry_out_of_reach_at_intake_leaves_the_submission_queued(settings, labelled, tmp_path):
    away = settings.model_copy(update={"registry": f"127.0.0.1:{free_port()}"})  # nothing listens there
    folder = write_submission(tmp_path / "labeller", {"type": "defense", "container": labelled(7), "entry_point": "run.sh"},
                              {"run.sh": LABEL_DEFENSE})
    with pytest.raises(DryRunUnavailable, match=f"cannot push .* to the registry {away.registry}"):
        submit_folder(away, folder, tmp_path)
    with transaction(settings) as session:
        submission = session.scalar(select(Submission))
        assert submission.status is SubmissionStatus.QUEUED and submission.container_image is None
