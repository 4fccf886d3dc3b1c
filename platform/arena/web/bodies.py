"""What the web app reads of a request body, and when: nothing it would refuse anyway.

An upload's body is parsed (and a large one spooled to disk) before any route runs, so the
routes' own checks come too late to protect the disk and memory. This ASGI middleware,
in front of everything, refuses:

- a body larger than the upload limit, by its declared Content-Length before reading any of
  it, or as it arrives when it declares none (413);
- a body larger than what an anonymous visitor ever needs to send (a login or sign-up form,
  ``ANONYMOUS_BODY_BYTES``) from a caller with no valid credential (401, or 429 past the
  login limiter), checked before its body is read: anonymous visitors cannot make the server
  store their uploads;
- a body that stops arriving for ``ARENA_BODY_IDLE_SECONDS`` (408), so that a client that
  idles cannot hold a worker and a spooled file.
"""

import asyncio

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from arena.web.auth import caller

#: Room for the multipart framing and form fields around an uploaded archive.
FRAMING_BYTES = 64 * 2**10
#: The largest body a caller without a credential may send: forms, never files.
ANONYMOUS_BODY_BYTES = 64 * 2**10


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the upload is larger than the limit of {limit} bytes")


class BodyGate:
    """ASGI middleware: the size, credential and idle checks above, before the body is read."""

    def __init__(self, app, limit: int, idle_seconds: float) -> None:
        self.app = app
        self.limit = limit
        self.idle_seconds = idle_seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        declared = int(declared) if declared is not None and declared.isdigit() else None
        try:
            if declared is not None and declared > self.limit + FRAMING_BYTES:
                raise too_large(self.limit)
            if declared is not None and declared > ANONYMOUS_BODY_BYTES:
                await self._require_credential(scope)
        except HTTPException as refused:
            return await _answer(refused, scope, receive, send)
        received, checked = 0, declared is not None

        async def gated():
            nonlocal received, checked
            try:
                message = await asyncio.wait_for(receive(), self.idle_seconds)
            except TimeoutError:
                raise HTTPException(408, f"no part of the request body arrived for {self.idle_seconds:g} seconds") from None
            received += len(message.get("body", b""))
            if received > self.limit + FRAMING_BYTES:
                raise too_large(self.limit)
            if received > ANONYMOUS_BODY_BYTES and not checked:
                checked = True
                await self._require_credential(scope)
            return message

        await self.app(scope, gated, send)

    @staticmethod
    async def _require_credential(scope) -> None:
        """401 for a caller that is nobody: no credential, an unknown token or a dead session
        (``identify`` answers 401 or 429 itself for a wrong token)."""
        if (await run_in_threadpool(caller, Request(scope))).anonymous:
            raise HTTPException(401, f"a request body over {ANONYMOUS_BODY_BYTES} bytes needs a team token or the "
                                     "organizer credential", headers={"WWW-Authenticate": "Bearer"})


async def _answer(refused: HTTPException, scope, receive, send) -> None:
    response = JSONResponse({"detail": refused.detail}, status_code=refused.status_code, headers=refused.headers)
    await response(scope, receive, send)
