"""A published round re-run on another installation from its results bundle, through real
containers: the same matrices cell by cell (and the same adversarial images), with an
attack whose outputs follow the names and order of its input files; under another naming
key the matrices differ, so the key is what makes them the same. A live round's bundle
carries no key, and a replay refuses what is not the round's."""

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from arena import actions
from arena.cli import app, common
from arena.competition import rounds
from arena.config import Settings
from arena.data.dataset import store_dataset, synthesize
from arena.db import transaction
from arena.execution.run import run
from arena.intake.archive import pack
from arena.models import AdversarialImage, AttackJob, Dataset, Image, Round, Submission
from arena.results import bundle
from arena.sandbox.staging import input_name
from conftest import SAMPLES, make_settings
from factories import add_submission, stream_attack, submit_folder, synth_dataset

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

IMAGES, BATCH, PACK, EPSILONS = 80, 10, 40, [4, 8]  # packs of 4 batches: two runs per attack and ε
#: The published round's key, fixed so that the matrix under ANOTHER_KEY differs every time
#: (with a random one it would still differ, but only almost always).
ROUND_KEY, ANOTHER_KEY = "5e" * 32, "a7" * 32


def _installation(root: Path) -> Settings:
    """A fresh installation: its own data folder and database, defaults unlike the round's
    (one ε, one batch per container run), and rows of its own first, so that the round's
    images and submissions get other ids than where the round ran."""
    settings = make_settings(root, epsilons=[2], pack_seconds=0)
    unrelated = store_dataset(settings, "unrelated", synthesize(7, seed=5), batch_size=3)
    with transaction(settings) as session:
        rounds.ensure(session, settings, session.get_one(Dataset, unrelated.id))
        add_submission(session, "unrelated-attack")
    store_dataset(settings, "synthetic", synthesize(IMAGES), batch_size=BATCH)  # as `arena dataset synth` does
    with transaction(settings) as session:
        rounds.ensure(session, settings, session.scalar(select(Dataset).where(Dataset.name == "synthetic")))
    return settings


def _outputs(settings: Settings) -> dict[tuple[str, int, str], str]:
    """Every adversarial image's hash by (attack name, ε, image name): ids differ between installations."""
    with transaction(settings) as session:
        return {(name, epsilon, image): sha256 for name, epsilon, image, sha256 in session.execute(
            select(Submission.name, AttackJob.epsilon, Image.name, AdversarialImage.sha256)
            .join(AttackJob, AdversarialImage.attack_job_id == AttackJob.id)
            .join(Submission, AttackJob.submission_id == Submission.id)
            .join(Image, AdversarialImage.image_id == Image.id))}


def _first_image_id(settings: Settings) -> int:
    with transaction(settings) as session:
        return session.scalar(select(func.min(Image.id)).join(Dataset).where(Dataset.name == "synthetic"))


@pytest.fixture(scope="module")
def published(engine, tmp_path_factory) -> dict:
    """A round run and published on one installation: an order-dependent attack (one random
    stream over its files in name order) and the decoder, packed 4 batches to a run; its
    bundle before and after publishing, its outputs, and the submissions as a team has them
    (the attack's archive as uploaded, the decoder's folder)."""
    root = tmp_path_factory.mktemp("published")
    settings = make_settings(root / "arena", epsilons=EPSILONS, pack_seconds=600, max_pack_images=PACK)
    synth_dataset(settings, IMAGES, batch_size=BATCH)
    with transaction(settings) as session:
        rounds.find(session, "synthetic").naming_key = ROUND_KEY
    uploads = root / "uploads"
    uploads.mkdir()
    stream = submit_folder(settings, stream_attack(root / "stream"), uploads)
    shutil.copytree(SAMPLES / "decoder", uploads / "decoder")
    decoder = submit_folder(settings, uploads / "decoder", root)
    assert [stream.status.value, decoder.status.value] == ["accepted", "accepted"], [stream.reason, decoder.reason]
    assert stream.pack_images == decoder.pack_images == PACK
    (uploads / "notes.txt").write_text("not a submission: the replay reads past it\n")
    assert not run(settings).platform_errors
    with transaction(settings) as session:
        live = bundle.write(session, settings, rounds.find(session, "synthetic"), root / "live.zip")
    actions.publish_round(settings, "synthetic")
    with transaction(settings) as session:
        final = bundle.write(session, settings, rounds.find(session, "synthetic"), root / "final.zip")
    return {"settings": settings, "live": live, "bundle": final, "uploads": uploads, "outputs": _outputs(settings)}


def _replay(settings: Settings, *arguments: str) -> Result:
    """`arena round replay ...` on the installation of ``settings``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "get_settings", lambda: settings)
        return CliRunner().invoke(app, ["round", "replay", *arguments])


def _with_manifest(source: Path, target: Path, change: Callable[[dict], None]) -> Path:
    """A copy of the bundle ``source`` whose manifest ``change`` edited in place."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for name in original.namelist():
            data = original.read(name)
            if name == bundle.MANIFEST:
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
            copy.writestr(name, data)
    return target


def test_a_published_round_replayed_on_a_fresh_installation_gives_the_same_matrices(published, tmp_path):
    settings = _installation(tmp_path / "elsewhere")
    assert _first_image_id(settings) != _first_image_id(published["settings"])  # names no longer follow ids

    result = _replay(settings, str(published["bundle"]), "--submissions", str(published["uploads"]))

    assert result.exit_code == 0, result.output
    assert "the same matrices: all" in result.output and "matrix files equal the bundle's" in result.output
    assert _outputs(settings) == published["outputs"]  # every adversarial image, byte for byte
    with transaction(settings) as session:
        replayed = rounds.find(session, "synthetic")
        assert (replayed.epsilons, replayed.naming_key, replayed.visibility.value) == (EPSILONS, ROUND_KEY, "hidden")
        assert set(session.scalars(select(Submission.pack_images).where(Submission.name != "unrelated-attack"))) == {PACK}
    again = _replay(settings, str(published["bundle"]), "--submissions", str(published["uploads"]))
    assert again.exit_code == 0 and "ran 0 attack jobs and 0 defense jobs" in again.output  # resumed, nothing to run


def test_replayed_under_another_naming_key_the_order_dependent_attack_s_cells_differ(published, tmp_path):
    settings = _installation(tmp_path / "elsewhere")
    other = _with_manifest(published["bundle"], tmp_path / "other-key.zip",
                           lambda manifest: manifest["round"].update(naming_key=ANOTHER_KEY))

    result = _replay(settings, str(other), "--submissions", str(published["uploads"]))

    assert result.exit_code == 1, result.output
    assert "cells differ" in result.output and "error_matrix" in result.output
    differing = {key for key, sha256 in _outputs(settings).items() if published["outputs"][key] != sha256}
    assert differing and {attack for attack, _eps, _image in differing} == {"stream"}


def test_a_live_round_s_bundle_carries_no_key_and_is_not_replayed(published, tmp_path):
    with zipfile.ZipFile(published["live"]) as live:
        manifest = json.loads(live.read(bundle.MANIFEST))
        assert manifest["round"]["visibility"] == "live" and manifest["round"]["naming_key"] is None
        assert not any(ROUND_KEY.encode() in live.read(name) for name in live.namelist())
    with zipfile.ZipFile(published["bundle"]) as final:
        assert json.loads(final.read(bundle.MANIFEST))["round"]["naming_key"] == ROUND_KEY
    settings = _installation(tmp_path / "elsewhere")
    result = _replay(settings, str(published["live"]), "--submissions", str(published["uploads"]))
    assert result.exit_code == 1 and "the bundle carries no naming key" in result.output


def test_a_replay_refuses_other_data_missing_code_and_missing_images_naming_them(published, tmp_path):
    settings = _installation(tmp_path / "elsewhere")
    store_dataset(settings, "other-seed", synthesize(IMAGES, seed=1), batch_size=BATCH)
    wrong_data = _replay(settings, str(published["bundle"]), "--submissions", str(published["uploads"]),
                         "--dataset", "other-seed")
    assert wrong_data.exit_code == 1 and "dataset 'other-seed' is not the round's" in wrong_data.output

    other_code = tmp_path / "other-code"
    other_code.mkdir()
    pack(SAMPLES / "noop", other_code / "noop.tar.gz")
    missing_code = _replay(settings, str(published["bundle"]), "--submissions", str(other_code))
    assert missing_code.exit_code == 1 and "holds no code that hashes as the bundle's for" in missing_code.output
    assert "stream (code" in missing_code.output and "decoder (code" in missing_code.output

    unknown_image = "sha256:" + "0" * 64

    def decoder_on_an_unknown_image(manifest: dict) -> None:
        next(entry for entry in manifest["submissions"] if entry["name"] == "decoder")["container_image"] = unknown_image

    moved = _with_manifest(published["bundle"], tmp_path / "moved.zip", decoder_on_an_unknown_image)
    missing_image = _replay(settings, str(moved), "--submissions", str(published["uploads"]))
    assert missing_image.exit_code == 1 and f"decoder ({unknown_image}" in missing_image.output
    with transaction(settings) as session:  # refused before anything was stored
        assert session.scalar(select(func.count(Submission.id))) == 1


def test_each_round_names_its_inputs_under_a_key_of_its_own(settings):
    """Publishing one round's key says nothing of another's names: keys are drawn per round,
    and a name is made of the key, the content and the image's name, never an id."""
    for name in ("dev", "final"):
        dataset = store_dataset(settings, name, synthesize(2), batch_size=2)
        with transaction(settings) as session:
            rounds.ensure(session, settings, session.get_one(Dataset, dataset.id))
    with transaction(settings) as session:
        keys = [rounds.naming_key(r) for r in session.scalars(select(Round).order_by(Round.id))]
        image = session.scalars(select(Image).order_by(Image.id)).first()
    assert len(set(keys)) == 2 and all(len(key) == 32 for key in keys)
    assert input_name(keys[0], image.sha256, image.name) != input_name(keys[1], image.sha256, image.name)
    assert input_name(keys[0], image.sha256, image.name) != input_name(keys[0], image.sha256, "another")
