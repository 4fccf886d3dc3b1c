"""Which pairs and images the query track runs (a round's ``query_top_k`` and ``query_images``).

All pairs is attacks x defenses x images x budget queries: at the 2017 size (100 x 100 x
1,000 images x 1,000 queries) far too much. A round may choose, as the 2018 AVC did, to run
each query attack against the top K served defenses (ranked by the batch track's defense
leaderboard: the defenses that matter) and each served defense against the top K query
attacks (ranked by the query track's own AVC score so far), on its first batches only. An
entry not ranked yet (no results) comes after the ranked ones, by id, so that a new entry
still runs against the top K of the other side: its own pairs, as in the batch tracks.
"""

from itertools import product

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena.competition.entries import Scope
from arena.models import Batch, Image, Round, Submission
from arena.results.query_scoring import attack_scores, results_frame
from arena.results.scoring import Standings


def chosen_pairs(attacks: list[int], defenses: list[int], attack_order: list[int], defense_order: list[int],
                 top_k: int | None) -> set[tuple[int, int]]:
    """The (attack, defense) pairs to run: all without ``top_k``; else each attack against the
    first ``top_k`` defenses of ``defense_order`` and each defense against the first ``top_k``
    attacks of ``attack_order`` (entries missing from an order come after it, by id)."""
    if top_k is None:
        return set(product(attacks, defenses))
    top_defenses = _ranked(defenses, defense_order)[:top_k]
    top_attacks = _ranked(attacks, attack_order)[:top_k]
    return set(product(attacks, top_defenses)) | set(product(top_attacks, defenses))


def _ranked(ids: list[int], order: list[int]) -> list[int]:
    present = set(ids)
    ranked = [i for i in order if i in present]
    return ranked + sorted(present - set(ranked))


def chosen_batches(batches: list[tuple[int, int]], images: int | None) -> list[int]:
    """The ids of the first ``(id, image count)`` batches, in order, that hold at least
    ``images`` images between them (all without ``images``)."""
    chosen, held = [], 0
    for batch_id, count in batches:
        if images is not None and held >= images:
            break
        chosen.append(batch_id)
        held += count
    return chosen


def defense_order(session: Session, round_: Round) -> list[int]:
    """Defense ids, best first, on the batch track's leaderboard of the round."""
    board = Standings.compute(session, round_.dataset, Scope.ALL).defense_leaderboard()
    return _ids(session, list(board.loc[board["scored"] > 0, "submission"]))


def attack_order(session: Session, round_: Round) -> list[int]:
    """Query attack ids, strongest first, by the query track's AVC score so far."""
    frame = results_frame(session, round_)
    return [] if frame.empty else _ids(session, list(attack_scores(frame, list(round_.epsilons)).index))


def _ids(session: Session, names: list[str]) -> list[int]:
    by_name = dict(session.execute(select(Submission.name, Submission.id).where(Submission.name.in_(names))).all())
    return [by_name[name] for name in names if name in by_name]


def round_batches(session: Session, round_: Round) -> list[int]:
    """The batches of the round the query track runs on."""
    rows = session.execute(select(Batch.id, func.count(Image.id)).join(Image, Image.batch_id == Batch.id)
                           .where(Batch.dataset_id == round_.dataset_id).group_by(Batch.id, Batch.index)
                           .order_by(Batch.index))
    return chosen_batches([(batch_id, count) for batch_id, count in rows], round_.query_images)
