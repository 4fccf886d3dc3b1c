"""Expected failures are ``ArenaError``s with a sentence, mapped once: the CLI prints one red
line and exits 1, never a traceback; a race between two uploads of the same code ends in
the intake's sentence, not a database error."""

import threading

import pytest
from typer.testing import CliRunner

from arena.cli import app
from arena.config import get_settings
from arena.errors import ArenaError, ConflictError, ForbiddenError, InputError, NotFoundError, PlatformError
from arena.execution import checking
from arena.intake import submit as intake
from arena.intake.archive import pack
from arena.intake.dry_run import ValidationReport
from arena.intake.submit import SubmissionError
from arena.models import SubmissionStatus
from arena.tools import base_image
from conftest import SAMPLES
from factories import synth_dataset


def test_every_domain_error_is_an_arena_error_with_its_status():
    from arena.admin.teams import TeamError
    from arena.admin.tournament import SettingError
    from arena.data.dataset import DatasetError
    from arena.db import SchemaOutOfDate
    from arena.intake.archive import ArchiveError
    from arena.intake.metadata import MetadataError
    from arena.sandbox.containers import EngineLost, SandboxError
    from arena.tools.base_image import RecipeError

    kinds = {InputError: 422, NotFoundError: 404, ForbiddenError: 403, ConflictError: 409, PlatformError: 503}
    for error in (TeamError, SettingError, DatasetError, SchemaOutOfDate, ArchiveError, MetadataError, SandboxError,
                  EngineLost, RecipeError, SubmissionError):
        kind = next(k for k in kinds if issubclass(error, k))
        assert issubclass(error, ArenaError) and error.status == kinds[kind]


def test_two_uploads_of_the_same_code_at_once(settings, tmp_path, monkeypatch):
    """Both pass their checks before either is stored (a barrier holds them there): one is
    accepted, the other is told the code is taken, as if it had come second. It used to be
    an IntegrityError, the check and the insert being two transactions."""
    synth_dataset(settings, 10, batch_size=10)
    archive = pack(SAMPLES / "noop", tmp_path / "noop.tar.gz")
    together = threading.Barrier(2, timeout=30)
    checked = intake._check_allowed

    def check_then_wait(*args) -> None:
        checked(*args)
        together.wait()

    monkeypatch.setattr(intake, "_check_allowed", check_then_wait)
    monkeypatch.setattr(checking.pinning, "pin", lambda _tags, _registry=None: {"container": "sha256:" + "0" * 64})  # no engine here
    monkeypatch.setattr(checking, "validate", lambda *_: ValidationReport(passed=True, images=10, seconds=0.1, time_limit=50.0, exit_code=0, timed_out=False))
    outcomes: list = []

    def upload(name: str) -> None:
        try:
            outcomes.append(checking.submit(settings, archive, team="blue", name=name))
        except Exception as exc:  # noqa: BLE001 - what it raises is what the test checks
            outcomes.append(exc)

    threads = [threading.Thread(target=upload, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    accepted = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(accepted) == 1 and accepted[0].status is SubmissionStatus.ACCEPTED
    assert len(refused) == 1 and isinstance(refused[0], SubmissionError), repr(refused[0])
    assert f"this code was already submitted as {accepted[0].name!r}" in str(refused[0])


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("ARENA_DATA_DIR", str(tmp_path / "arena"))
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(app, list(args))
    get_settings.cache_clear()


def test_the_cli_says_every_expected_failure_the_same_way(cli, monkeypatch, tmp_path):
    """Each used to take its own path: a bare RuntimeError traceback for base images without
    debootstrap, a hand-printed line for an unknown submission."""
    monkeypatch.setattr(base_image.shutil, "which", lambda _name: None)
    monkeypatch.setattr(base_image, "_image", lambda _tag: None)
    # its own build lock: the host's is held for a minute while another test builds arena/app
    monkeypatch.setattr(base_image, "BUILD_LOCK", tmp_path / "base-images.lock")
    assert cli("db", "upgrade").exit_code == 0
    for args, sentence in ((["images", "build"], "debootstrap is not installed"),
                           (["submissions", "show", "ghost"], "no submission named 'ghost'"),
                           (["disqualify", "ghost", "--reason", "x"], "no submission named 'ghost'")):
        result = cli(*args)
        assert result.exit_code == 1 and f"\nerror: {sentence}" in f"\n{result.output}", (args, result.output)
        assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
