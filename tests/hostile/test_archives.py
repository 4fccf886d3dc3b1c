"""Hostile archives and metadata, through ``arena.intake.submit``: each is refused with a
message naming the problem, nothing is stored or written outside the scratch folder, and
the tournament is untouched."""

import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arena.db import transaction
from arena.execution.checking import submit
from arena.intake.archive import ArchiveError
from arena.intake.metadata import MetadataError
from arena.intake.submit import SubmissionError
from arena.models import Submission
from hostile.tournament import IMAGE

pytestmark = [pytest.mark.docker]
META = {"type": "attack", "container": IMAGE, "entry_point": "run_attack.sh"}
ESCAPE = "escaped-by-archive"  # a name that must never appear outside the scratch folder


def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, target)


def _tar(path: Path, members: dict[str, bytes], special: list[tarfile.TarInfo] = ()) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
        for info in special:
            archive.addfile(info)


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


BASE = {"metadata.json": json.dumps(META).encode(), "run_attack.sh": b"#!/bin/sh\ncp \"$1\"/*.png \"$2\"/\n"}


def _through_link(archive: Path) -> None:
    """A link to a folder inside the tree, then a member written through it: a later link
    target could point anywhere, so writing through any link is refused."""
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in BASE.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(_link("inner", ".", tarfile.SYMTYPE))
        member = tarfile.TarInfo(f"inner/{ESCAPE}")
        member.size = 1
        tar.addfile(member, io.BytesIO(b"x"))


Builder = Callable[[Path, Path], None]  # (archive to write, a folder outside the scratch folder)

CASES: dict[str, tuple[str, Builder, type[Exception], str]] = {
    "zip_path_traversal": ("zip", lambda a, out: _zip(a, {**BASE, f"../../../../{out}/{ESCAPE}": b"x"}),
                           ArchiveError, "path traversal"),
    "tar_path_traversal": ("tar.gz", lambda a, out: _tar(a, {**BASE, f"../../{ESCAPE}": b"x"}),
                           ArchiveError, "path traversal"),
    "tar_absolute_path": ("tar.gz", lambda a, out: _tar(a, {**BASE, f"{out}/{ESCAPE}": b"x"}),
                          ArchiveError, "absolute path"),
    "zip_absolute_path": ("zip", lambda a, out: _zip(a, {**BASE, f"/{ESCAPE}": b"x"}), ArchiveError, "absolute path"),
    "zip_symlink": ("zip", lambda a, out: _zip(a, BASE, {"weights.bin": "/etc/shadow"}), ArchiveError,
                    "links are not accepted in zip"),
    "tar_symlink_outside": ("tar.gz", lambda a, out: _tar(a, BASE, [_link("weights", str(out), tarfile.SYMTYPE)]),
                            ArchiveError, "links outside the archive"),
    "tar_write_through_symlink": ("tar.gz", lambda a, out: _through_link(a), ArchiveError, "through the link"),
    "tar_hardlink_outside": ("tar.gz", lambda a, out: _tar(a, BASE, [_link("weights", "../../etc/passwd", tarfile.LNKTYPE)]),
                             ArchiveError, "links outside the archive"),
    "tar_device": ("tar.gz", lambda a, out: _tar(a, BASE, [_device("console")]), ArchiveError, "device, fifo"),
    "zip_bomb": ("zip", lambda a, out: _zip(a, {**BASE, "zeros.bin": bytes(8 * 2**20)}), ArchiveError, "archive bomb"),
    "too_many_files": ("zip", lambda a, out: _zip(a, {**BASE, **{f"f{i}": b"" for i in range(60)}}), ArchiveError,
                       "more than 50 files"),
    "not_an_archive": ("zip", lambda a, out: a.write_bytes(b"MZ\x90\x00 not an archive"), ArchiveError,
                       "not a .zip, .tar or .tar.gz"),
    "unknown_type": ("zip", lambda a, out: _zip(a, {**BASE, "metadata.json": json.dumps({**META, "type": "sneaky"}).encode()}),
                     MetadataError, "type: Input should be 'attack', 'targeted_attack', 'defense', 'query_attack' or 'query_targeted'"),
    "missing_entry_point": ("zip", lambda a, out: _zip(a, {"metadata.json": BASE["metadata.json"]}), MetadataError,
                            "entry_point 'run_attack.sh' is not a file"),
    "disallowed_image": ("zip", lambda a, out: _zip(a, {**BASE, "metadata.json": json.dumps(
        {**META, "container": "evil/miner:latest"}).encode()}), SubmissionError, "'evil/miner:latest' is not allowed here"),
}




def _count(settings) -> int:
    with transaction(settings) as session:
        return session.scalar(select(func.count(Submission.id)))


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_archive_is_refused(tournament, tmp_path, case):
    suffix, build, error, message = CASES[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / f"{case}.{suffix}"
    build(archive, outside)
    settings = tournament.settings.model_copy(update={"max_archive_bytes": 2**20, "max_archive_files": 50,
                                                      "allowed_images": [IMAGE]})
    submissions, stored = _count(settings), sorted(settings.submissions_dir.iterdir())
    with pytest.raises(error, match=message):
        submit(settings, archive, team="t", name=case)
    assert _count(settings) == submissions and sorted(settings.submissions_dir.iterdir()) == stored
    assert not list(outside.iterdir()) and not list(settings.work_dir.iterdir())
    assert not (settings.data_dir / ESCAPE).exists() and not (Path("/") / ESCAPE).exists()
    tournament.check_unchanged()
