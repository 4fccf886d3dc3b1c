"""The object store against a real S3 server (SeaweedFS): what is put is read back on a host
that shares no folder with the writer, under its content's hash; each host's cache keeps
to its bound, least recently used out first; a missing or damaged object is the platform's
failure, so the job runs again and nothing is blamed on the submission; and a tournament
whose run shares nothing but the database and the bucket with its intake scores as one on
the local folder does."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from arena.competition import rounds
from arena.config import Settings
from arena.data import objects
from arena.data.images import image_store
from arena.db import transaction
from arena.errors import PlatformError
from arena.execution import pack_run, planning
from arena.execution.run import run
from arena.models import (
    AdversarialImage,
    Classification,
    Dataset,
    DefenseJob,
    Image,
    JobAttempt,
    JobStatus,
    Round,
    Submission,
    SubmissionKind,
)
from arena.operations.backup import backup
from arena.operations.restore import restore
from arena.results import bundle
from arena.results.scoring import Standings
from arena.sandbox import code, containers
from arena.web.app import create_app
from conftest import SAMPLES, make_settings
from factories import FAKE_CODE, attacked, submit_folder, synth_dataset
from servers import seaweed_server

ARENA = Path(sys.executable).parent / "arena"


BUCKET = "arena"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    with seaweed_server(tmp_path_factory.mktemp("seaweed")) as server:
        server.bucket(BUCKET)
        yield server


@pytest.fixture
def prefix(request) -> str:
    """The test's own part of the bucket."""
    return request.node.name


def _host(tmp_path: Path, name: str, seaweed, prefix: str, **overrides):
    """Settings of one host: its own data folder (empty until it works), the shared bucket."""
    return make_settings(tmp_path / name, **seaweed.settings(f"s3://{BUCKET}/{prefix}"), **overrides)


def _store_host(tmp_path: Path, name: str, seaweed, prefix: str, **overrides) -> Settings:
    """A host's settings for a test of the store alone, which needs no database."""
    return Settings(data_dir=tmp_path / name, **seaweed.settings(f"s3://{BUCKET}/{prefix}"), **overrides)


def _key(prefix: str, sha256: str) -> str:
    return f"{prefix}/images/{sha256[:2]}/{sha256}.png"


def test_an_image_put_on_one_host_is_read_on_another_under_its_hash(tmp_path, seaweed, prefix):
    writer, reader = _store_host(tmp_path, "writer", seaweed, prefix), _store_host(tmp_path, "reader", seaweed, prefix)
    data = os.urandom(5000)
    sha256 = image_store(writer).put(data)
    assert image_store(writer).put(data) == sha256 == hashlib.sha256(data).hexdigest()
    listed = seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["Contents"]
    assert [item["Key"] for item in listed] == [_key(prefix, sha256)]  # once, under its hash
    head = seaweed.client().head_object(Bucket=BUCKET, Key=listed[0]["Key"])
    assert head["Metadata"] == {"sha256": sha256}
    assert not (reader.data_dir / "store").exists()
    path = image_store(reader).path(sha256)
    assert path.is_relative_to(reader.cache_dir) and path.read_bytes() == data


def test_a_hosts_cache_keeps_to_its_bound_dropping_the_least_recently_used(tmp_path, seaweed, prefix):
    writer = _store_host(tmp_path, "writer", seaweed, prefix)
    reader = _store_host(tmp_path, "reader", seaweed, prefix, cache_bytes=2500)
    blobs = {name: os.urandom(1000) for name in "abcd"}
    for name, data in blobs.items():
        objects.store(writer).images.put(name, data)
    images = objects.store(reader).images
    cache = images.cache
    first_a, _ = images.path("a"), images.path("b")
    images.path("a")  # a is now more recent than b
    images.path("c")  # 3000 bytes: b, the least recently used, goes
    cached = {path.name for path in cache.folder.rglob("*") if path.is_file()}
    assert cached == {"a", "c"} and cache.total == 2000
    assert images.path("b").read_bytes() == blobs["b"]  # fetched again; a goes now
    assert not first_a.exists() and cache.total == 2000
    assert sum(path.stat().st_size for path in cache.folder.rglob("*") if path.is_file()) <= 2500


def test_a_missing_or_damaged_object_is_the_platforms_error(tmp_path, seaweed, prefix):
    writer, reader = _store_host(tmp_path, "writer", seaweed, prefix), _store_host(tmp_path, "reader", seaweed, prefix)
    sha256 = image_store(writer).put(b"the true bytes")
    with pytest.raises(objects.ObjectMissing, match="has no s3://"):
        image_store(reader).path("0" * 64)
    seaweed.client().put_object(Bucket=BUCKET, Key=_key(prefix, sha256), Body=b"other bytes",
                                Metadata={"sha256": sha256})
    with pytest.raises(objects.ObjectCorrupted, match=f"not {sha256}"):
        image_store(reader).path(sha256)
    assert not [path for path in reader.cache_dir.rglob("*") if path.is_file()]  # nothing damaged is kept
    assert issubclass(objects.StoreError, PlatformError)  # retried, never blamed on a submission


def _break(seaweed, key: str, sha256: str) -> bytes:
    """Replace an image's object by other bytes; its true bytes, to put back."""
    true = seaweed.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    seaweed.client().put_object(Bucket=BUCKET, Key=key, Body=true[:-1] + b"\x00", Metadata={"sha256": sha256})
    return true


def test_a_job_whose_input_is_damaged_fails_on_the_platform_and_runs_again(tmp_path, seaweed, prefix, monkeypatch):
    """The defense runs through the real staging (its container alone is faked): staging an
    input whose object is damaged fails the pack as the platform's error, its jobs go to
    error with the reason on their attempts, and once the object is sound the next run
    finishes them."""
    intake = _host(tmp_path, "intake", seaweed, prefix, epsilons=[4])
    worker = _host(tmp_path, "worker", seaweed, prefix, epsilons=[4], database_url=intake.resolved_database_url)
    dataset = synth_dataset(intake, 4, batch_size=2)
    with transaction(intake) as session:
        attacked(session, dataset, [4], [("A", SubmissionKind.ATTACK), ("D", SubmissionKind.DEFENSE)])
        damaged = session.scalars(select(AdversarialImage.sha256).order_by(AdversarialImage.id)).first()
    monkeypatch.setattr(pack_run, "submission_code", lambda _settings, _submission: FAKE_CODE)
    monkeypatch.setattr(containers, "run", lambda *_a, **_k: containers.RunResult(0, False, None, 0.01, ""))
    true = _break(seaweed, _key(prefix, damaged), damaged)
    first = run(worker)
    assert first.platform_errors
    with transaction(worker) as session:
        failed = session.scalars(select(JobAttempt).where(JobAttempt.error.is_not(None))).all()
        assert failed and all("is damaged" in attempt.error for attempt in failed)
        assert session.scalar(select(func.count()).select_from(DefenseJob).where(DefenseJob.status == JobStatus.DONE)) < 4
    seaweed.client().put_object(Bucket=BUCKET, Key=_key(prefix, damaged), Body=true,
                                Metadata={"sha256": damaged})
    run(worker)
    with transaction(worker) as session:
        statuses = set(session.scalars(select(DefenseJob.status)))
    assert statuses == {JobStatus.DONE}


def test_the_web_serves_images_from_the_bucket_with_no_folder_of_its_own(tmp_path, seaweed, prefix):
    intake = _host(tmp_path, "intake", seaweed, prefix, epsilons=[4])
    web = _host(tmp_path, "web", seaweed, prefix, epsilons=[4], database_url=intake.resolved_database_url,
                organizer_token="organizer-secret")
    dataset = synth_dataset(intake, 2, batch_size=2)
    with transaction(intake) as session:
        attacked(session, dataset, [4], [("A", SubmissionKind.ATTACK)])
        adversarial = session.scalars(select(AdversarialImage).order_by(AdversarialImage.id)).first()
        adversarial_id, image_id, sha256 = adversarial.id, adversarial.image_id, adversarial.sha256
    client, organizer = TestClient(create_app(web)), {"Authorization": "Bearer organizer-secret"}
    clean = client.get(f"/api/images/{image_id}/image.png", headers=organizer)
    assert clean.status_code == 200 and hashlib.sha256(clean.content).hexdigest() == sha256
    assert client.get(f"/api/adversarial/{adversarial_id}/perturbation.png", headers=organizer).status_code == 200
    seaweed.client().delete_object(Bucket=BUCKET, Key=_key(prefix, sha256))
    shutil.rmtree(web.cache_dir)
    missing = client.get(f"/api/images/{image_id}/image.png", headers=organizer)
    assert missing.status_code == 404 and "not in the store" in missing.text


def _tree(folder: Path) -> dict[str, tuple[int, bytes | str]]:
    """A code tree's files and links, with their modes, as the sandbox sees them."""
    return {path.relative_to(folder).as_posix(): (path.lstat().st_mode & 0o777, os.readlink(path) if path.is_symlink()
            else path.read_bytes() if path.is_file() else "") for path in sorted(folder.rglob("*"))}


def _results(settings) -> dict:
    with transaction(settings) as session:
        dataset = session.scalars(select(Dataset)).one()
        standings = Standings.compute(session, dataset)
        rows = (session.scalar(select(func.count(AdversarialImage.id))),
                session.scalar(select(func.count()).select_from(Classification)),
                sorted(session.scalars(select(AdversarialImage.sha256))))
    return {"error": standings.matrix("error").to_dict(), "hit": standings.matrix("hit").to_dict(), "rows": rows}


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_a_run_sharing_only_the_database_and_the_bucket_scores_as_the_local_folder_does(tmp_path, seaweed, prefix):
    """Intake on one host; the run in another process whose data folder is new and empty,
    as a worker host's is; then the installation backed up (its objects read from the
    bucket), restored onto the local folder, and run again there: the same matrices, and the
    same adversarial images, byte for byte; restored into another part of the bucket, its
    code and images read there as on the local folder. Once published, the round's bundle that one more
    host (the web's) builds is kept in the bucket, where the others find it."""
    intake = _host(tmp_path, "intake", seaweed, prefix, epsilons=[4], pack_seconds=0)
    synth_dataset(intake, 4, batch_size=4)
    for sample in ("random_noise", "decoder"):
        assert submit_folder(intake, SAMPLES / sample, tmp_path).status.value == "accepted"
    assert not (intake.data_dir / "submissions").exists() and not (intake.data_dir / "store").exists()
    runner = tmp_path / "runner"
    env = {**os.environ, "ARENA_DATA_DIR": str(runner), "ARENA_DATABASE_URL": intake.resolved_database_url,
           "ARENA_EPSILONS": "4", "ARENA_PACK_SECONDS": "0", "ARENA_SANDBOX_MEMORY": "512m",
           "ARENA_STORE_URL": f"s3://{BUCKET}/{prefix}", "ARENA_STORE_ENDPOINT": seaweed.endpoint,
           "ARENA_STORE_ACCESS_KEY": seaweed.ACCESS_KEY, "ARENA_STORE_SECRET_KEY": seaweed.SECRET_KEY}
    finished = subprocess.run([str(ARENA), "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert (runner / "cache" / "code").is_dir() and not (runner / "store").exists()
    on_bucket = _results(intake)
    assert on_bucket["rows"][0] == 4 and on_bucket["rows"][1] == 8  # 4 adversarial, 4 + 4 answers

    snapshot = backup(intake, tmp_path / "backups")
    assert snapshot.manifest["objects"]["count"] >= 4 and snapshot.manifest["submissions"]["with_code"] == 2
    local = intake.model_copy(update={"data_dir": tmp_path / "local", "store_url": None})
    restore(local, snapshot.folder)
    with transaction(local) as session:
        planning.forget(session)
    assert not run(local).platform_errors
    assert _results(local) == on_bucket
    into_bucket = intake.model_copy(update={"data_dir": tmp_path / "restored",
                                            "store_url": f"s3://{BUCKET}/{prefix}-restored"})
    restore(into_bucket, snapshot.folder)  # and back into a bucket, read there by a host of its own
    reader = into_bucket.model_copy(update={"data_dir": tmp_path / "reader", "database_url": None})
    with transaction(local) as session:
        submissions = session.scalars(select(Submission.sha256)).all()
        images = set(session.scalars(select(AdversarialImage.sha256))) | set(session.scalars(select(Image.sha256)))
    for sha256 in submissions:
        assert _tree(code.fetched(reader, sha256)) == _tree(local.submissions_dir / sha256)
    for sha256 in images:
        assert image_store(reader).read_bytes(sha256) == image_store(local).read_bytes(sha256)

    with transaction(intake) as session:  # the bundle the web builds is kept in the bucket, for every host
        rounds.publish(session.scalars(select(Round)).one(), 0)
    web = Settings(data_dir=tmp_path / "web", database_url=intake.resolved_database_url,
                   **seaweed.settings(f"s3://{BUCKET}/{prefix}"))
    with transaction(web) as session:
        round_ = session.scalars(select(Round)).one()
        built = bundle.kept(session, web, round_).read_bytes()
    kept = objects.store(intake).bundles.path(bundle.kept_name(round_.id))
    assert kept.is_relative_to(intake.cache_dir) and kept.read_bytes() == built
