"""The web app served for real by uvicorn, with `arena web`'s settings, on a free loopback
port, in a thread of the test process: started and stopped by the context manager, so
nothing outlives the test."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI

from arena.web import serving
from servers import free_port


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
