"""What many API routes take: ids, names, ε, paging, the request's session and settings, and
the standings the caller may see (``snapshot``: the one dependency that asks ``permissions``)."""

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from arena.competition.entries import Scope
from arena.config import Settings
from arena.web import permissions
from arena.web.auth import caller, presents_credential
from arena.web.cache import Snapshot
from arena.web.deps import get_settings

Id = Annotated[int, Path(ge=1, le=2**31 - 1, description="A database id.")]


RoundPath = Annotated[str, Path(min_length=1, max_length=200, description="A round's name.")]


DatasetName = Annotated[str | None, Query(max_length=200, description="Dataset (default: the newest).")]


Epsilon = Annotated[int | None, Query(alias="eps", ge=0, le=255, description="One epsilon (default: all).")]


Limit = Annotated[int, Query(ge=1, le=10_000)]


ScopeParameter = Annotated[Scope, Query(description="counting: one entry per team and track (everyone); "
                                                    "all: every accepted entry (organizers).")]


Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


async def snapshot(request: Request, dataset: DatasetName = None, scope: ScopeParameter = Scope.COUNTING) -> Snapshot:
    """The dataset's current standings, when the caller may see them. Served from the cache
    with no query for anonymous readers while the leaderboards are public: the common case
    under load. A credential, when one is sent, is checked all the same (401 if wrong).
    Every entry (``scope=all``) is for organizers; everyone else sees one per team and track."""
    cache = request.app.state.standings
    current = cache.peek(dataset, scope) or await run_in_threadpool(cache.get, dataset, scope)
    if presents_credential(request) or not current.public or scope is Scope.ALL:
        who = await run_in_threadpool(caller, request)
        permissions.check_results(who, current.public)
        permissions.check_scope(who, scope)
    return current.snapshot


Visible = Annotated[Snapshot, Depends(snapshot)]


SettingsDep = Annotated[Settings, Depends(get_settings)]
