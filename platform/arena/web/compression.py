"""gzip for what the web answers: cached bodies compressed once, the rest per request.

The leaderboards, the matrix and their pages are read by many clients between two changes
of the results, so their bodies are compressed when the snapshot shapes them and every
request is sent the stored bytes: compressing a page per request would cost more than
serving it. Other answers (HTML, JSON, CSV, the static files) go through Starlette's
``GZipMiddleware``, which leaves an answer that already has a ``Content-Encoding`` alone.
"""

import gzip
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

#: Level 6 compresses the leaderboards page of 100 x 100 to within 6% of level 9 in about
#: a third of the time (docs/benchmarks.md); cached bodies take the smallest, once.
MIDDLEWARE_LEVEL = 6
CACHED_LEVEL = 9
#: Below this, the gzip header and the CPU cost more than the bytes saved.
MINIMUM_SIZE = 1000


@dataclass(frozen=True)
class Body:
    """An answer's bytes as they are and gzipped (None when too small to gain from it)."""

    raw: bytes
    gzipped: bytes | None
    media_type: str

    @classmethod
    def of(cls, raw: bytes, media_type: str) -> "Body":
        return cls(raw, gzip.compress(raw, CACHED_LEVEL, mtime=0) if len(raw) >= MINIMUM_SIZE else None, media_type)


def accepts_gzip(request: Request) -> bool:
    """Read as Starlette's middleware reads it, so both answer a client alike."""
    return "gzip" in request.headers.get("accept-encoding", "")


def respond(request: Request, body: Body) -> Response:
    headers = {"Vary": "Accept-Encoding"}
    if body.gzipped is not None and accepts_gzip(request):
        return Response(body.gzipped, media_type=body.media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(body.raw, media_type=body.media_type, headers=headers)
