"""Request-scoped dependencies: the settings and one database transaction per request."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.db import transaction


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """Committed when the route returns, rolled back if it raises: a failed request stores nothing."""
    with transaction(request.app.state.settings) as session:
        yield session


#: The request's transaction, committed before the answer is sent (``scope="function"``):
#: FastAPI's default ends a ``yield`` dependency after the answer, so a browser following
#: the login's redirect could ask before its session was committed, and be served as a
#: visitor; and an answer could report a change whose commit then failed.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
