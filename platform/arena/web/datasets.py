"""Which dataset a request is about: the named one, or the newest (the tournament under way)."""

from fastapi import HTTPException
from sqlalchemy import desc, select
from sqlalchemy.orm import Session

from arena.data.dataset import DatasetError, find_dataset
from arena.models import Dataset


def pick_dataset(session: Session, name: str | None) -> Dataset:
    if name is not None:
        try:
            return find_dataset(session, name)
        except DatasetError as exc:
            raise HTTPException(404, str(exc)) from None
    dataset = session.scalar(select(Dataset).order_by(desc(Dataset.id)).limit(1))
    if dataset is None:
        raise HTTPException(404, "no dataset imported yet: import one with `arena dataset import`")
    return dataset
