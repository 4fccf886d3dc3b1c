"""Which pairs and images the query track runs (a round's ``query_top_k`` and ``query_images``).

All pairs is attacks x defenses x images x budget queries: at the 2017 size (100 x 100 x
1,000 images x 1,000 queries) far too much. A round may choose, as the 2018 AVC did, to run
each query attack against the top K served defenses (ranked by the batch track's defense
leaderboard: the defenses that matter) and each served defense against the top K query
attacks (ranked by the query track's own AVC score so far), on its first batches only. An
entry not ranked yet (no results) comes after the ranked ones, by id, so that a new entry
still runs against the top K of the other side: its own pairs, as in the batch tracks.
"""

import threading
from collections.abc import Callable
from itertools import product

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena import job_states
from arena.competition.entries import Scope
from arena.models import Batch, DefenseJob, Image, QueryJob, Round, Submission
from arena.results.query_scoring import attack_scores, results_frame
from arena.results.scoring import Standings


def ranks_matter(attacks: int, defenses: int, top_k: int | None) -> bool:
    """Whether the orders change ``chosen_pairs``: not without a top K, nor while each side has
    K entries or fewer (every pair is chosen then), so that planning reads no leaderboard."""
    return top_k is not None and (attacks > top_k or defenses > top_k)


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
    """Defense ids, best first, on the batch track's leaderboard of the round: computed again
    only when a defense job of the round has finished (or run again, or gone) since, as the
    query attacks' order is (``_remembered``)."""
    def ranked() -> list[int]:
        board = Standings.compute(session, round_.dataset, Scope.ALL).defense_leaderboard()
        return _ids(session, list(board.loc[board["scored"] > 0, "submission"]))

    return _remembered(session, round_, "defenses", _done_state(session, round_, DefenseJob), ranked)


def attack_order(session: Session, round_: Round) -> list[int]:
    """Query attack ids, strongest first, by the query track's AVC score so far (the ranking
    alone: the boards' intervals are most of their cost, bench/query_planning.py)."""
    def ranked() -> list[int]:
        frame = results_frame(session, round_)
        if frame.empty:
            return []
        return _ids(session, list(attack_scores(frame, list(round_.epsilons), intervals=False).index))

    return _remembered(session, round_, "query attacks", _done_state(session, round_, QueryJob), ranked)


#: The last order of each kind and round (by database and round id), with the state of the
#: jobs it was computed from.
_orders: dict[tuple[str, int, str], tuple[tuple, list[int]]] = {}
_orders_lock = threading.Lock()


def _remembered(session: Session, round_: Round, kind: str, state: tuple, rank: Callable[[], list[int]]) -> list[int]:
    """``rank()``, or the order it gave last for this round while ``state`` is the same: the
    planner asks at every turn, and a ranking reads every result of the round (seconds at the
    2017 size), which changes only when a job finishes."""
    key = (str(session.get_bind().url), round_.id, kind)
    with _orders_lock:
        known = _orders.get(key)
    if known is not None and known[0] == state:
        return known[1]
    order = rank()
    with _orders_lock:
        _orders[key] = (state, order)
    return order


def _done_state(session: Session, round_: Round, job_class: type[DefenseJob] | type[QueryJob]) -> tuple:
    """What changes whenever the round's results of that kind of job do: its done jobs' count,
    their newest id and the sum of their attempts (a job run again stores new results)."""
    done = (select(job_class.id, job_class.attempt).join(Batch, Batch.id == job_class.batch_id)
            .where(Batch.dataset_id == round_.dataset_id, job_states.done(job_class)).subquery())
    return tuple(session.execute(select(func.count(), func.max(done.c.id), func.sum(done.c.attempt))).one())


def _ids(session: Session, names: list[str]) -> list[int]:
    by_name = dict(session.execute(select(Submission.name, Submission.id).where(Submission.name.in_(names))).all())
    return [by_name[name] for name in names if name in by_name]


def round_batches(session: Session, round_: Round) -> list[int]:
    """The batches of the round the query track runs on."""
    rows = session.execute(select(Batch.id, func.count(Image.id)).join(Image, Image.batch_id == Batch.id)
                           .where(Batch.dataset_id == round_.dataset_id).group_by(Batch.id, Batch.index)
                           .order_by(Batch.index))
    return chosen_batches([(batch_id, count) for batch_id, count in rows], round_.query_images)
