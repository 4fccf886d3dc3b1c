"""Request-scoped dependencies: the settings and one database transaction per request."""

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.db import transaction


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """Committed when the route returns, rolled back if it raises: a failed request stores nothing."""
    with transaction(request.app.state.settings) as session:
        yield session
