"""How the web app is served: uvicorn's settings from Arena's, one place for `arena web` and
the tests that serve the app for real.

Forwarded headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are believed only from the
proxies named in ``ARENA_TRUSTED_PROXIES``. uvicorn believes them from loopback by default:
behind a local proxy, or from the host itself, anyone could then spread password guesses
over made-up addresses, or have a chosen address locked out by the login limiter.
"""

import uvicorn
from fastapi import FastAPI


def server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app`` (made by ``create_app``, whose settings it reads)."""
    trusted = app.state.settings.trusted_proxies
    proxies = {"proxy_headers": True, "forwarded_allow_ips": ",".join(trusted)} if trusted else {"proxy_headers": False}
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", **proxies))
