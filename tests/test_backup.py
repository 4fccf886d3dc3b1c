"""`arena backup` and `arena restore`: a snapshot taken while a real run goes on restores, into
a fresh installation, the state at its moment (leaderboards, matrices, the 2017 CSVs, the
bundle's bytes), and the run goes on there to the source's very results; a damaged snapshot
or a non-empty target is refused, naming what is wrong; a later snapshot into the same
folder copies only the new files; PostgreSQL round-trips through pg_dump and pg_restore."""

import hashlib
import shutil
import sqlite3
import tempfile
import threading
import zipfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from arena import cli, job_states, tables
from arena.competition import rounds
from arena.config import Settings, get_settings
from arena.data import logs
from arena.db import transaction
from arena.errors import ConflictError, PlatformError
from arena.execution import pack_run, planning
from arena.execution.run import run
from arena.execution.summary import RunSummary
from arena.models import (
    AdversarialImage,
    AttackJob,
    DefenseJob,
    DryRun,
    JobKind,
    JobStatus,
    Round,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    as_utc,
    utcnow,
)
from arena.operations.backup import backup
from arena.operations.layout import OBJECTS, Snapshot, SnapshotError
from arena.operations.restore import restore
from arena.results import bundle
from arena.results.judging import MatrixValue
from arena.results.leaderboards import Leaderboards
from arena.results.scoring import Standings
from arena.sandbox.defense_run import DefenseOutcome
from conftest import SAMPLES, assert_tallies_match_a_rebuild, make_settings, wait_until
from factories import (
    Labels,
    add_submission,
    adversarial_outputs,
    attacked,
    defense_packs,
    every_case,
    fake_defenses,
    stream_attack,
    submit_folder,
    synth_dataset,
)
from servers import new_database, postgres_server

DEADLINE_SECONDS = 180


def figures(settings: Settings) -> dict[str, str]:
    """What an installation shows of its one round: each leaderboard and every matrix, the
    files of its results bundle (the 2017 CSVs and the rest of the export) and the bundle's
    sha256."""
    with transaction(settings) as session, tempfile.TemporaryDirectory() as scratch:
        round_ = session.scalars(select(Round)).one()
        standings = Standings.compute(session, round_.dataset)
        boards = Leaderboards.load(session, round_.dataset, standings)
        shown = {f"{track} leaderboard": boards.track(track).to_csv() for track in tables.TRACKS}
        shown |= {f"{value} matrix at eps {eps}": standings.matrix(value, eps).to_csv()
                  for value in MatrixValue for eps in (None, *standings.epsilons)}
        zipped = bundle.write(session, settings, round_, Path(scratch) / "results.zip")
        with zipfile.ZipFile(zipped) as files:
            shown |= {name: files.read(name).decode() for name in files.namelist() if name.endswith(".csv")}
        shown["bundle sha256"] = hashlib.sha256(zipped.read_bytes()).hexdigest()
    return shown


def empty_installation(like: Settings, data_dir: Path, database_url: str | None = None) -> Settings:
    """Settings of a fresh installation, otherwise those of ``like``: nothing made yet."""
    return like.model_copy(update={"data_dir": data_dir, "database_url": database_url})


def as_at(snapshot: Snapshot, like: Settings, data_dir: Path) -> Settings:
    """The source as it was at the snapshot's moment: the snapshot's SQLite file alone, copied
    by hand (figures read the database only), to compare a restore against."""
    data_dir.mkdir(parents=True)
    shutil.copyfile(snapshot.database_file, data_dir / "arena.db")
    return empty_installation(like, data_dir)


def jobs(settings: Settings) -> tuple[int, int]:
    """Attack and defense jobs: (done, all)."""
    with transaction(settings) as session:
        done = sum(session.scalar(select(func.count(kind.job_class.id)).where(kind.job_class.status == JobStatus.DONE))
                   for kind in JobKind)
        every = sum(session.scalar(select(func.count(kind.job_class.id))) for kind in JobKind)
    return done, every


def referenced(database: Path) -> set[str]:
    """The store files a SQLite database references, read from its file directly."""
    with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
        return {sha256 for (sha256,) in connection.execute(
            "SELECT sha256 FROM images UNION SELECT sha256 FROM adversarial_images")}


def referenced_logs(database: Path) -> set[str]:
    """The full logs a SQLite database's job attempts (both of a query job's) and dry runs name
    (data/logs.py)."""
    with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
        return {sha256 for (sha256,) in connection.execute(
            "SELECT log_sha256 FROM job_attempts WHERE log_sha256 IS NOT NULL "
            "UNION SELECT served_log_sha256 FROM job_attempts WHERE served_log_sha256 IS NOT NULL "
            "UNION SELECT log_sha256 FROM dry_runs WHERE log_sha256 IS NOT NULL")}


# --- a real run, backed up in the middle --------------------------------------------------


@dataclass(frozen=True)
class MidRun:
    settings: Settings
    backups: Path
    snapshot: Snapshot  # taken while the run was going
    stream_id: int  # the attack whose run was going
    at_snapshot: dict[str, str]  # the figures of the snapshot's database, copied by hand
    final: dict[str, str]  # the source's figures once its run finished
    outputs: dict[tuple, str]  # the source's adversarial images once its run finished


@pytest.fixture(scope="module")
def mid_run(tmp_path_factory, engine) -> MidRun:
    """A real tournament on a real engine, nine images in batches of three at two epsilons,
    one job per container run: a noise attack and a defense, run to the end; then an attack
    whose outputs follow its inputs' names (a restore without the round's naming key would
    make other images), whose run is backed up once some of its attack jobs are done and others
    are not, the run going on meanwhile."""
    root = tmp_path_factory.mktemp("backup")
    settings = make_settings(root / "arena", epsilons=[4, 16], pack_seconds=0, lease_seconds=6)
    synth_dataset(settings, 9, batch_size=3)
    for folder in (SAMPLES / "random_noise", SAMPLES / "decoder"):
        assert submit_folder(settings, folder, root).status.value == "accepted"
    assert not run(settings).platform_errors
    stream = submit_folder(settings, stream_attack(root / "stream"), root)
    assert stream.status.value == "accepted"
    summaries: list[RunSummary] = []
    runner = threading.Thread(target=lambda: summaries.append(run(settings)), daemon=True)
    runner.start()
    try:
        wait_until(lambda: _attack_jobs_done(settings, stream.id) > 0, DEADLINE_SECONDS, "a first job of the new attack")
        snapshot = backup(settings, root / "backups")
    finally:
        runner.join(DEADLINE_SECONDS)
    assert not runner.is_alive() and summaries and not summaries[0].platform_errors
    at_snapshot = figures(as_at(snapshot, settings, root / "as-at-snapshot"))
    return MidRun(settings, root / "backups", snapshot, stream.id, at_snapshot, figures(settings),
                  adversarial_outputs(settings))


def _attack_jobs_done(settings: Settings, attack_id: int) -> int:
    with transaction(settings) as session:
        return session.scalar(select(func.count(AttackJob.id))
                              .where(AttackJob.submission_id == attack_id, AttackJob.status == JobStatus.DONE))


@pytest.mark.docker
def test_a_snapshot_taken_during_a_run_restores_its_moment_and_the_run_goes_on_there(mid_run, tmp_path):
    at_snapshot = as_at(mid_run.snapshot, mid_run.settings, tmp_path / "as-at")
    assert 0 < _attack_jobs_done(at_snapshot, mid_run.stream_id) < _attack_jobs_done(mid_run.settings, mid_run.stream_id), \
        "the snapshot was not taken in the middle of the new attack's run"
    assert mid_run.at_snapshot != mid_run.final

    restored = empty_installation(mid_run.settings, tmp_path / "restored")
    restore(restored, mid_run.snapshot.folder)
    assert figures(restored) == mid_run.at_snapshot
    assert_tallies_match_a_rebuild(restored)
    kept = referenced_logs(restored.data_dir / "arena.db")  # the runs' full logs came back with their rows
    assert kept and all(logs.read(restored, sha256) == logs.read(mid_run.settings, sha256) for sha256 in kept)

    summary = run(restored)  # jobs running at the snapshot are taken over once their lease runs out
    assert not summary.platform_errors and summary.attack_jobs > 0
    assert jobs(restored) == jobs(mid_run.settings)
    assert adversarial_outputs(restored) == mid_run.outputs  # the same input names: the round's naming key came back
    assert figures(restored) == mid_run.final


@pytest.mark.docker
def test_a_later_snapshot_into_the_same_folder_copies_only_what_is_new_and_restores_the_later_state(mid_run, tmp_path):
    """Once the run has finished, the next snapshot into the same folder copies exactly the
    images the folder lacks (the new attack's later outputs), no code (it was all there),
    and restores the later state."""
    pooled = _pooled(mid_run.backups)
    later = backup(mid_run.settings, mid_run.backups)
    added = {pool: names - pooled[pool] for pool, names in _pooled(mid_run.backups).items()}

    earlier, now = referenced(mid_run.snapshot.database_file), referenced(mid_run.settings.data_dir / "arena.db")
    assert {name.removesuffix(".png") for name in added["objects"]} == now - earlier != set()
    images, code = later.manifest["objects"], later.manifest["blobs"]
    assert (images["count"], images["copied"]) == (len(now), len(now - earlier))
    new_logs = referenced_logs(mid_run.settings.data_dir / "arena.db") - referenced_logs(mid_run.snapshot.database_file)
    assert added["blobs"] == new_logs  # the later runs' full logs; no code (it was all there)
    assert code["copied"] == len(new_logs) and code["count"] > 0
    assert later.manifest["previous"] == mid_run.snapshot.folder.name

    restored = empty_installation(mid_run.settings, tmp_path / "restored")
    restore(restored, mid_run.backups)  # the folder: its newest snapshot
    assert figures(restored) == mid_run.final


def _pooled(backups: Path) -> dict[str, set[str]]:
    """The files in each pool of a backup folder."""
    return {pool: {path.name for path in (backups / pool).rglob("*") if path.is_file()} for pool in ("objects", "blobs")}


# --- damaged snapshots and targets that are not empty, on a tournament without containers ---


def installation(settings: Settings, monkeypatch) -> list[pack_run.Pack]:
    """A small tournament's rows with its attacks done, each submission's code installed (a
    folder, an executable, a link); its defenses' runs faked. Its defense
    packs, to run through ``pack_run``."""
    dataset = synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        attacked(session, dataset, settings.epsilons)
        code = session.scalars(select(Submission.sha256)).all()
    for sha256 in code:
        folder = settings.submissions_dir / sha256
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "weights.bin").write_bytes(b"\x00" * 1000)  # shared by every submission: one blob
        (folder / "run.sh").write_text(f"#!/bin/sh\n# {sha256}\n")
        (folder / "run.sh").chmod(0o755)
        (folder / "start.sh").symlink_to("run.sh")
    fake_defenses(monkeypatch, settings)
    return defense_packs(settings)


def answered(settings: Settings, monkeypatch) -> Settings:
    """The small tournament with every defense's answers stored."""
    for pack in installation(settings, monkeypatch):
        pack_run.run_pack(settings, pack)
    return settings


@pytest.fixture
def small(settings, monkeypatch, tmp_path) -> tuple[Settings, Snapshot]:
    """A small tournament, and a snapshot of it."""
    answered(settings, monkeypatch)
    return settings, backup(settings, tmp_path / "backups")


def _damage_an_image(snapshot: Snapshot) -> str:
    sha256 = (snapshot.folder / OBJECTS).read_text().split()[0]
    path = snapshot.root.objects.path(sha256)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    return f"objects/{sha256[:2]}/{sha256}.png does not match its hash"


def _lose_a_code_file(snapshot: Snapshot) -> str:
    blob = min(path for path in snapshot.root.blobs.rglob("*") if path.is_file())
    blob.unlink()
    return f"blobs/{blob.parent.name}/{blob.name} is missing"


def _damage_the_database(snapshot: Snapshot) -> str:
    with snapshot.database_file.open("ab") as file:
        file.write(b"\x00")
    return f"snapshots/{snapshot.folder.name}/database.sqlite does not match its hash"


@pytest.mark.parametrize("damage", [_damage_an_image, _lose_a_code_file, _damage_the_database])
def test_a_damaged_snapshot_is_refused_by_name_and_nothing_is_written(small, tmp_path, damage):
    source, snapshot = small
    problem = damage(snapshot)
    target = empty_installation(source, tmp_path / "restored")
    with pytest.raises(SnapshotError) as refusal:
        restore(target, snapshot.folder)
    assert problem in str(refusal.value) and "nothing was written" in str(refusal.value)
    assert not target.data_dir.exists()


def arena(data_dir: Path, *arguments: str):
    """The command line, on the installation in ``data_dir``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARENA_DATA_DIR", str(data_dir))
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli.app, list(arguments))
        finally:
            get_settings.cache_clear()


def test_the_command_line_backs_up_restores_and_refuses_a_second_restore_naming_what_is_there(small, tmp_path):
    source, snapshot = small
    taken = arena(source.data_dir, "backup", str(snapshot.root.path))
    assert taken.exit_code == 0 and "images: 4 (" in taken.output and "0 copied (0 B)" in taken.output, taken.output
    assert f"from {snapshot.folder.name} and before" in taken.output
    first = arena(tmp_path / "restored", "restore", str(snapshot.root.path))
    assert first.exit_code == 0 and "4 images, 4 submissions' code" in first.output, first.output
    again = arena(tmp_path / "restored", "restore", str(snapshot.root.path))
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert "tables (adversarial_images, alembic_version" in again.output
    assert "holds store/, submissions/" in again.output

    restored = empty_installation(source, tmp_path / "restored")
    board = ["leaderboard", "--format", "csv", "--all"]
    assert arena(restored.data_dir, *board).output == arena(source.data_dir, *board).output
    for sha256 in _code(source):
        folder, original = restored.submissions_dir / sha256, source.submissions_dir / sha256
        assert (folder / "start.sh").readlink() == Path("run.sh") and (folder / "run.sh").stat().st_mode & 0o777 == 0o755
        assert (folder / "run.sh").read_text() == (original / "run.sh").read_text()
        assert (folder / "model" / "weights.bin").read_bytes() == (original / "model" / "weights.bin").read_bytes()
    assert snapshot.manifest["blobs"]["count"] == len(_code(source)) + 1  # the weights once, each run.sh


def _names(settings: Settings) -> set[str]:
    with transaction(settings) as session:
        return set(session.scalars(select(Submission.name)))


def _code(settings: Settings) -> list[str]:
    with transaction(settings) as session:
        return list(session.scalars(select(Submission.sha256)))


def test_a_target_whose_data_folder_holds_files_is_refused_naming_them(small, tmp_path):
    source, snapshot = small
    target = empty_installation(source, tmp_path / "restored")
    (target.store_dir / "ab").mkdir(parents=True)
    (target.store_dir / "ab" / "left-over.png").write_bytes(b"x")
    (target.data_dir / "work").mkdir()  # scratch: allowed
    with pytest.raises(ConflictError, match=r"holds store/\. Restore into a fresh data folder"):
        restore(target, snapshot.folder)
    assert not (target.data_dir / "arena.db").exists() and not (target.data_dir / "submissions").exists()


def test_a_folder_that_is_not_a_backup_is_refused_both_ways(small, tmp_path):
    source, snapshot = small
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "letter.txt").write_text("dear")
    with pytest.raises(SnapshotError, match="holds files but is not an Arena backup folder"):
        backup(source, tmp_path / "documents")
    with pytest.raises(SnapshotError, match="neither an Arena backup folder nor a snapshot"):
        restore(empty_installation(source, tmp_path / "restored"), tmp_path / "documents")
    (snapshot.folder / "manifest.json").unlink()
    with pytest.raises(SnapshotError, match="holds no finished snapshot"):
        restore(empty_installation(source, tmp_path / "restored"), snapshot.root.path)


@pytest.mark.parametrize("damage", ["lost", "altered"])
def test_a_damaged_store_is_refused_at_backup_leaving_no_snapshot(settings, monkeypatch, tmp_path, damage):
    answered(settings, monkeypatch)
    with transaction(settings) as session:
        sha256 = session.scalars(select(AdversarialImage.sha256).order_by(AdversarialImage.id)).first()
    path = settings.store_dir / sha256[:2] / f"{sha256}.png"
    if damage == "lost":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes() + b"\x00")
    problem = "which the database references" if damage == "lost" else "does not match its hash"
    with pytest.raises(PlatformError, match=f"{path}.*{problem}: the store is damaged"):
        backup(settings, tmp_path / "backups")
    assert list((tmp_path / "backups" / "snapshots").iterdir()) == []


def test_a_published_rounds_kept_bundle_comes_back_byte_for_byte(settings, monkeypatch, tmp_path):
    answered(settings, monkeypatch)
    with transaction(settings) as session:
        round_ = session.scalars(select(Round)).one()
        rounds.publish(round_, planning.unfinished_jobs(session, round_))
    with transaction(settings) as session:
        kept = bundle.kept(session, settings, session.scalars(select(Round)).one())
    snapshot = backup(settings, tmp_path / "backups")
    assert snapshot.manifest["bundles"] == [kept.name]
    restored = empty_installation(settings, tmp_path / "restored")
    restore(restored, snapshot.folder)
    assert (restored.data_dir / "downloads" / kept.name).read_bytes() == kept.read_bytes()


def test_an_upload_caught_before_its_code_was_installed_is_left_out_and_missing_code_otherwise_refused(
        settings, monkeypatch, tmp_path):
    """An upload's row is committed before its code is moved in place: a snapshot taken in
    between has the row and no code. Restore leaves it out, as intake forgets an upload whose
    installation failed; code missing for any other submission is damage, refused by name."""
    answered(settings, monkeypatch)
    with transaction(settings) as session:
        late = add_submission(session, "late", SubmissionKind.DEFENSE, status=SubmissionStatus.QUEUED)
        dry_run = DryRun(submission=late, round_id=session.scalars(select(Round.id)).one())
        job_states.hold_for_upload(dry_run, settings.lease_seconds)
        session.add(dry_run)
    snapshot = backup(settings, tmp_path / "backups")
    assert snapshot.manifest["submissions"]["being_taken_in"] == ["late"]
    restored = empty_installation(settings, tmp_path / "restored")
    described = restore(restored, snapshot.folder).describe()
    assert "left out as a failed upload is: late" in described
    assert _names(restored) == _names(settings) - {"late"}
    assert referenced(restored.data_dir / "arena.db") == referenced(settings.data_dir / "arena.db")

    with transaction(settings) as session:
        session.execute(update(DryRun).where(DryRun.submission_id == late.id).values(attempt=1))  # claimed: installed
    with pytest.raises(PlatformError, match="the code of submission 'late' is missing from .*: the installation is damaged"):
        backup(settings, tmp_path / "backups")
    assert [folder.name for folder in (tmp_path / "backups" / "snapshots").iterdir()] == [snapshot.folder.name]


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as url:
        yield url


def test_postgres_round_trips_through_pg_dump_taken_while_a_pack_is_stored(postgres, tmp_path, monkeypatch):
    """A defense's pack is held mid-run (its jobs claimed, its answers not yet stored) while the
    backup is taken: the restore shows the moment before, and the pack then runs again on the
    restored database to the source's results."""
    source = make_settings(tmp_path / "source", database_url=new_database(postgres), lease_seconds=2)
    first, second = installation(source, monkeypatch)
    pack_run.run_pack(source, first)
    release, holding = threading.Event(), threading.Event()

    def held(labels: Labels, inputs) -> DefenseOutcome:
        holding.set()
        assert release.wait(DEADLINE_SECONDS)
        return every_case(labels, inputs)

    fake_defenses(monkeypatch, source, held)
    stored = threading.Thread(target=pack_run.run_pack, args=(source, second), daemon=True)
    stored.start()
    try:
        wait_until(holding.is_set, DEADLINE_SECONDS, "the second pack to be claimed and running")
        at_snapshot = figures(source)
        snapshot = backup(source, tmp_path / "backups")
    finally:
        release.set()
        stored.join(DEADLINE_SECONDS)
    final = figures(source)
    assert snapshot.manifest["database"]["dialect"] == "postgresql" and snapshot.database_file.name == "database.pgdump"
    assert at_snapshot != final

    target = empty_installation(source, tmp_path / "restored", new_database(postgres))
    restore(target, tmp_path / "backups")
    assert figures(target) == at_snapshot
    assert_tallies_match_a_rebuild(target)
    with pytest.raises(ConflictError, match=r"has \d+ tables \(adversarial_images"):
        restore(empty_installation(source, tmp_path / "again", target.database_url), tmp_path / "backups")

    fake_defenses(monkeypatch, target)
    wait_until(lambda: _lease_ran_out(target, second), DEADLINE_SECONDS, "the restored pack's lease to run out")
    assert pack_run.run_pack(target, second).finished == len(second.job_ids)
    assert figures(target) == final


def _lease_ran_out(settings: Settings, pack: pack_run.Pack) -> bool:
    with transaction(settings) as session:
        leases = session.scalars(select(DefenseJob.lease_expires_at).where(DefenseJob.id.in_(pack.job_ids))).all()
    return all(lease is not None and as_utc(lease) < utcnow() for lease in leases)


def test_a_snapshot_goes_back_into_the_kind_of_database_it_came_from(small, postgres, tmp_path):
    source, snapshot = small
    target = empty_installation(source, tmp_path / "restored", new_database(postgres))
    with pytest.raises(SnapshotError, match="holds a sqlite database and this installation's is postgresql"):
        restore(target, snapshot.folder)
    assert not target.data_dir.exists()

