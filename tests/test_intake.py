"""Submitting: bad archives and metadata are refused with a reason; the dry run on a real
engine accepts working code and rejects broken code with a report that says what broke."""

import json
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arena.db import transaction
from arena.execution.checking import submit
from arena.intake.archive import pack
from arena.intake.metadata import MetadataError
from arena.intake.submit import SubmissionError
from arena.models import Submission, SubmissionStatus
from conftest import SAMPLES, make_settings
from factories import submit_folder, synth_dataset, variant, write_submission

ATTACK_META = {"type": "attack", "container": "arena/python:bookworm", "entry_point": "run_attack.sh"}
DEFENSE_META = {"type": "defense", "container": "arena/python:bookworm", "entry_point": "run_defense.sh"}


def make_submission(tmp_path: Path, name: str, metadata: dict, script: str) -> Path:
    """An archive whose entry point (when the metadata names one inside) runs ``script``."""
    entry = metadata.get("entry_point")
    files = {entry: "#!/bin/sh\n" + script} if entry and ".." not in entry else {}
    return pack(write_submission(tmp_path / name, metadata, files), tmp_path / f"{name}.tar.gz")


@pytest.fixture
def small(tmp_path):
    settings = make_settings(tmp_path / "arena", seconds_per_image=1.0, epsilons=[4, 16])
    synth_dataset(settings, 10, batch_size=10)
    return settings


def _count(settings) -> int:
    with transaction(settings) as session:
        return session.scalar(select(func.count(Submission.id)))


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"container": "x", "entry_point": "run.sh"}, "type: Field required"),
        ({**ATTACK_META, "type": "sneaky"},
         "type: Input should be 'attack', 'targeted_attack', 'defense', 'query_attack' or 'query_targeted'"),
        ({**ATTACK_META, "serving_entry_point": "serve.sh"}, "serving_entry_point is for defenses"),
        ({**DEFENSE_META, "serving_entry_point": "serve.sh"}, "serving_entry_point 'serve.sh' is not a file"),
        ({**ATTACK_META, "entry_point": "../../bin/sh"}, "entry_point: Value error, must be a file inside"),
        ({**ATTACK_META, "entry_point": ""}, "entry_point"),
    ],
)
def test_bad_metadata_is_refused_and_nothing_stored(small, tmp_path, metadata, message):
    archive = make_submission(tmp_path, "bad", metadata, "true\n")
    with pytest.raises(MetadataError, match=message):
        submit(small, archive, team="t")
    assert _count(small) == 0


def test_missing_metadata_or_entry_point(small, tmp_path):
    folder = tmp_path / "nometa"
    folder.mkdir()
    (folder / "run.sh").write_text("true")
    with pytest.raises(MetadataError, match="metadata.json is missing"):
        submit(small, pack(folder, tmp_path / "nometa.tar.gz"), team="t")
    (folder / "metadata.json").write_text(json.dumps({**ATTACK_META, "entry_point": "absent.sh"}))
    with pytest.raises(MetadataError, match="'absent.sh' is not a file"):
        submit(small, pack(folder, tmp_path / "nometa2.tar.gz"), team="t")
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(MetadataError, match="not valid JSON"):
        submit(small, pack(folder, tmp_path / "nometa3.tar.gz"), team="t")


def test_submitting_before_any_dataset_says_what_to_do(settings, tmp_path):
    with pytest.raises(Exception, match="no round takes uploads: there is none yet"):
        submit_folder(settings, SAMPLES / "noop", tmp_path)


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
class TestDryRun:
    def test_working_samples_are_accepted_and_duplicates_refused(self, small, tmp_path):
        accepted = submit_folder(small, SAMPLES / "random_noise", tmp_path)
        assert accepted.status is SubmissionStatus.ACCEPTED
        report = accepted.validation_report
        assert report["passed"] and report["images"] == 10 and report["problems"] == []
        zipped = tmp_path / "again.zip"
        with zipfile.ZipFile(zipped, "w") as z:
            for path in (SAMPLES / "random_noise").iterdir():
                z.write(path, f"random_noise/{path.name}")
        with pytest.raises(SubmissionError, match="already submitted by another team$"):  # never its name
            submit(small, zipped, team="someone-else")
        with pytest.raises(SubmissionError, match="already submitted as 'random_noise'.*ask the organizers to carry"):
            submit(small, zipped, team=accepted.team.name)

    def test_a_crashing_attack_is_rejected_with_exit_code_and_log(self, small, tmp_path):
        archive = make_submission(tmp_path, "crash", ATTACK_META, "echo 'model weights not found' >&2\nexit 3\n")
        rejected = submit(small, archive, team="t")
        assert rejected.status is SubmissionStatus.REJECTED
        assert rejected.validation_report["exit_code"] == 3
        assert "the attack exit code 3" in rejected.reason
        assert "10 of 10 outputs missing" in rejected.reason
        assert "model weights not found" in rejected.validation_report["log_tail"]

    def test_wrong_size_outputs_are_resized_as_in_2017(self, small, tmp_path):
        """The 2017 evaluation resized them (bicubic) and scored them; so does Arena, and says so."""
        script = 'python3 -c "\nimport sys, os\nfrom PIL import Image\nfor n in os.listdir(sys.argv[1]):\n    Image.new(\'RGB\', (300, 300)).save(os.path.join(sys.argv[2], n))\n" "$1" "$2"\n'
        accepted = submit(small, make_submission(tmp_path, "big", ATTACK_META, script), team="t")
        assert accepted.status is SubmissionStatus.ACCEPTED, accepted.reason
        assert "10 output(s) of the wrong size resized to 299x299 (bicubic) as in 2017" in accepted.validation_report["notes"]

    def test_a_slow_defense_times_out(self, small, tmp_path):
        rejected = submit(small, make_submission(tmp_path, "slow", DEFENSE_META, "sleep 600\n"), team="t")
        assert rejected.validation_report["timed_out"]
        assert "timed out" in rejected.reason and "result.csv was not written" in rejected.reason

    def test_garbage_result_csv_is_reported(self, small, tmp_path):
        script = 'for f in "$1"/*.png; do echo "$(basename $f),dog"; done > "$2"\n'
        rejected = submit(small, make_submission(tmp_path, "garbage", DEFENSE_META, script), team="t")
        assert rejected.status is SubmissionStatus.REJECTED
        assert "10 image(s) invalid" in rejected.reason

    def test_a_new_name_is_needed_for_a_taken_one(self, small, tmp_path):
        submit_folder(small, SAMPLES / "noop", tmp_path)
        changed = variant(SAMPLES / "noop", tmp_path, "changed")
        with pytest.raises(SubmissionError, match="a submission named 'noop' exists"):
            submit_folder(small, changed, tmp_path, name="noop")
        assert submit_folder(small, changed, tmp_path).status is SubmissionStatus.ACCEPTED
