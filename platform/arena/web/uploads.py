"""Taking a submission archive over HTTP into the normal intake path.

The upload is streamed to a scratch file and refused as soon as it passes the size limit,
so an oversized upload never fills the disk; then it goes through exactly the same
intake (safe unpacking, metadata, dedup, dry run) as ``arena submit``.
"""

import re
import shutil
import tempfile
from pathlib import Path

from fastapi import HTTPException, UploadFile

from arena import tournament
from arena.archive import ArchiveError
from arena.config import Settings
from arena.db import transaction
from arena.intake import SubmissionError, submit
from arena.metadata import MetadataError
from arena.models import Submission

CHUNK = 2**20
INTAKE_ERRORS = (SubmissionError, ArchiveError, MetadataError)


def _safe_filename(name: str | None) -> str:
    """The client's file name, reduced to a plain name: it only names the submission by default."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or "upload").name).lstrip(".")
    return base[:100] or "upload"


def _save(upload: UploadFile, folder: Path, limit: int) -> Path:
    path = folder / _safe_filename(upload.filename)
    written = 0
    with path.open("wb") as out:
        while chunk := upload.file.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise HTTPException(413, f"the archive is larger than the upload limit of {limit} bytes")
            out.write(chunk)
    if written == 0:
        raise HTTPException(400, "the uploaded archive is empty")
    return path


def take_upload(settings: Settings, upload: UploadFile, team: str, name: str | None) -> Submission:
    """Store and dry-run an uploaded archive; a bad archive is a 400 naming the problem."""
    with transaction(settings) as session:
        if not tournament.current(session).uploads_open:
            raise HTTPException(403, "uploads are closed for this tournament")
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=settings.work_dir))
    try:
        archive = _save(upload, folder, settings.max_upload_bytes)
        return submit(settings, archive, team=team, name=(name or "").strip() or None)
    except INTAKE_ERRORS as exc:
        raise HTTPException(400, str(exc)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
