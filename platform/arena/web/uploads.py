"""Taking a submission archive over HTTP into the normal intake path.

Two guards keep an oversized upload from filling the disk: ``BodyLimit`` refuses a request
whose body is larger than the limit (by its Content-Length, or as it arrives when chunked)
before the multipart parser spools it; the archive is then copied to a scratch file with
the same limit. It goes through exactly the same intake (safe unpacking, metadata, dedup,
dry run) as ``arena submit``, and the intake's errors reach the app's one handler as they
are (``web.app``): a bad archive, a bad metadata.json, no dataset yet are each a 4xx with
the intake's own sentence.
"""

import re
import shutil
import tempfile
from pathlib import Path

from fastapi import HTTPException, UploadFile
from fastapi.responses import JSONResponse

from arena.config import Settings
from arena.errors import InputError
from arena.intake.submit import submit
from arena.models import Submission

CHUNK = 2**20
#: Room for the multipart framing and form fields around the archive itself.
FRAMING_BYTES = 64 * 2**10


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the upload is larger than the limit of {limit} bytes")


class BodyLimit:
    """ASGI middleware: 413 for a request body past the upload limit, read no further."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit + FRAMING_BYTES:
            response = JSONResponse({"detail": too_large(self.limit).detail}, status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit + FRAMING_BYTES:
                raise too_large(self.limit)
            return message

        await self.app(scope, counted, send)


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


def take_upload(settings: Settings, upload: UploadFile, team: str, name: str | None, round_name: str) -> Submission:
    """Store and dry-run an uploaded archive; the scratch copy is removed whatever happens."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=settings.work_dir))
    try:
        archive = _save(upload, folder, settings.max_upload_bytes)
        return submit(settings, archive, team=team, name=(name or "").strip() or None, round_name=round_name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
