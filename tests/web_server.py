"""The web app served for real by uvicorn, with `arena web`'s settings, on a free loopback
port, in a thread of the test process: started and stopped by the context manager, so
nothing outlives the test."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from arena.web import serving
from servers import free_port

#: How long a test waits for one answer of a served site. A deadline, not a measure: the first
#: render of a page computes its standings while containers and other tests share two cores, and
#: httpx's own default (5 s) once ran out in CI on a page that was only slow.
ANSWER_DEADLINE = httpx.Timeout(120.0)


def get(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.get`` with the tests' deadline."""
    return httpx.get(url, timeout=ANSWER_DEADLINE, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.post`` with the tests' deadline."""
    return httpx.post(url, timeout=ANSWER_DEADLINE, **kwargs)


def client(url: str, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` on the served site with the tests' deadline."""
    return httpx.Client(base_url=url, timeout=ANSWER_DEADLINE, **kwargs)


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = serving.server(app, "127.0.0.1", port)  # as `arena web` serves it
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
