"""What the 2017 validator and worker accepted at intake, without containers: extra
metadata fields, an entry point that lost its executable bit, archives recognised by
content, a ``__MACOSX`` folder beside the top-level one (docs/submissions.md, rows 30-37)."""

import io
import os
import tarfile
import zipfile

from sqlalchemy import select

from arena.intake.archive import extract
from arena.intake.metadata import Metadata
from arena.intake.submit import install, unpacked

META = b'{"type": "attack", "container": "arena/python:bookworm", "entry_point": "run.sh", "author": "team blue"}'
LIMITS = {"max_bytes": 2**20, "max_files": 100}


def _zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:  # zip members carry no executable bit here
        for name, data in members.items():
            archive.writestr(name, data)


def test_extra_fields_and_a_lost_executable_bit_are_accepted(settings, tmp_path):
    archive = tmp_path / "blue.zip"
    _zip(archive, {"blue/metadata.json": META, "blue/run.sh": b"#!/bin/sh\ntrue\n"})
    with unpacked(settings, archive) as (root, metadata, sha256):
        assert metadata.model_dump()["author"] == "team blue"  # kept, as 2017 ignored it
        installed = install(settings, root, metadata, sha256)
    assert os.access(installed / "run.sh", os.X_OK)


def test_archives_are_recognised_by_content_and_macosx_is_ignored(tmp_path):
    archive = tmp_path / "blue.tgz"  # 2017 refused the .tgz name; the bytes are a .tar.gz
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in {"blue/metadata.json": META, "blue/run.sh": b"true\n", "__MACOSX/._run.sh": b"x"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    root = extract(archive, tmp_path / "out", **LIMITS)
    assert root.name == "blue" and Metadata.read(root).entry_point == "run.sh"


def test_the_2017_final_rounds_epsilon_schedule(settings):
    """``eps_schedule = round_robin``: batch k at the k-th epsilon, one attack job per batch
    (a quarter of the work with four epsilons), and progress expects just those."""
    from arena.config import EpsilonSchedule
    from arena.db import transaction
    from arena.execution import planning
    from arena.models import AttackJob, Batch, SubmissionKind
    from arena.results.progress import tournament_progress
    from factories import add_submission, synth_dataset

    settings = settings.model_copy(update={"epsilons": [4, 8, 12, 16], "eps_schedule": EpsilonSchedule.ROUND_ROBIN})
    dataset = synth_dataset(settings, 60, batch_size=10)
    with transaction(settings) as session:
        add_submission(session, "A", SubmissionKind.ATTACK)
        assert planning.plan(session, dataset, settings.epsilons, settings.eps_schedule).attack_jobs == 6
        at = dict(session.execute(select(Batch.index, AttackJob.epsilon).join(Batch)).all())
        assert at == {0: 4, 1: 8, 2: 12, 3: 16, 4: 4, 5: 8}
        assert tournament_progress(session, dataset, settings)["attack_jobs"].expected == 6
