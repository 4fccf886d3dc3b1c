"""Which dataset a request is about: the named one, or the newest (the tournament under way)."""

from sqlalchemy import desc, select
from sqlalchemy.orm import Session

from arena.data.dataset import DatasetError, find_dataset
from arena.errors import NotFoundError
from arena.models import Dataset


def pick_dataset(session: Session, name: str | None) -> Dataset:
    """A name that matches nothing is a NotFoundError (404), not a bad input: the caller named
    a thing that does not exist, which is what the web answers with 404 everywhere else."""
    if name is not None:
        try:
            return find_dataset(session, name)
        except DatasetError as exc:
            raise NotFoundError(str(exc)) from None
    dataset = session.scalar(select(Dataset).order_by(desc(Dataset.id)).limit(1))
    if dataset is None:
        raise NotFoundError("no dataset imported yet: import one with `arena dataset import`")
    return dataset
