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
from itertools import product

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena import job_states
from arena.competition.entries import Scope
from arena.models import Batch, Image, QueryJob, Round, Submission
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
    """Defense ids, best first, on the batch track's leaderboard of the round."""
    board = Standings.compute(session, round_.dataset, Scope.ALL).defense_leaderboard()
    return _ids(session, list(board.loc[board["scored"] > 0, "submission"]))


#: The last attack order of each round (by database and round id), with the state of its
#: results it was computed from.
_attack_orders: dict[tuple[str, int], tuple[tuple, list[int]]] = {}
_attack_orders_lock = threading.Lock()


def attack_order(session: Session, round_: Round) -> list[int]:
    """Query attack ids, strongest first, by the query track's AVC score so far. The planner
    asks at every turn, and the ranking reads every result of the round (seconds at the 2017
    size: bench/query_planning.py), so it is computed again only when a query job of the round
    has finished (or run again, or gone) since: ``_results_state``."""
    key, state = (str(session.get_bind().url), round_.id), _results_state(session, round_)
    with _attack_orders_lock:
        known = _attack_orders.get(key)
    if known is not None and known[0] == state:
        return known[1]
    frame = results_frame(session, round_)
    order = [] if frame.empty else _ids(session, list(attack_scores(frame, list(round_.epsilons), intervals=False).index))
    with _attack_orders_lock:
        _attack_orders[key] = (state, order)
    return order


def _results_state(session: Session, round_: Round) -> tuple:
    """What changes whenever the round's query results do: its done query jobs' count, their
    newest id and the sum of their attempts (a job run again stores new results)."""
    done = (select(QueryJob.id, QueryJob.attempt).join(Batch, Batch.id == QueryJob.batch_id)
            .where(Batch.dataset_id == round_.dataset_id, job_states.done(QueryJob)).subquery())
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
