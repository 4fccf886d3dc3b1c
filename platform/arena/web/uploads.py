"""Taking a submission archive over HTTP into the normal intake path.

Two guards keep an oversized upload from filling the disk: ``bodies.BodyGate`` refuses a
request whose body is larger than the limit (by its Content-Length, or as it arrives when
chunked), or that comes from nobody, before the multipart parser spools it; the archive is
then copied to a scratch file with the same limit. It goes through exactly the same action
(``actions.upload``) and intake (safe unpacking, metadata, dedup, dry run) as ``arena submit``, and the intake's errors reach the app's one handler as they
are (``web.app``): a bad archive, a bad metadata.json, no dataset yet are each a 4xx with
the intake's own sentence.
"""

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from arena.config import Settings
from arena.errors import InputError
from arena.web.bodies import too_large

CHUNK = 2**20


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
                raise too_large(limit)
            out.write(chunk)
    if written == 0:
        raise InputError("the uploaded archive is empty")
    return path


@contextmanager
def saved(settings: Settings, upload: UploadFile) -> Iterator[Path]:
    """The uploaded archive copied to a scratch file, for intake; removed whatever happens."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=settings.work_dir))
    try:
        yield _save(upload, folder, settings.max_upload_bytes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
