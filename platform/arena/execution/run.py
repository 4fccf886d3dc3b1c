"""The one way to run a tournament's missing work, whoever asks (``arena run``, ``arena
rerun``, the demo, the study, the web's Run button).

Where the work runs is the only choice, made here: in this process when no broker is
set, on Celery workers when ``ARENA_BROKER_URL`` is. Both executors take the same turn
(``packing.next_packs``: reap expired leases, plan, pack under the retry cap), claim and
store through the same ``pack_run`` and ``leases``, and report the same ``RunSummary``.
"""

from arena.config import Settings
from arena.data.dataset import find_dataset
from arena.db import transaction
from arena.execution import local
from arena.execution.summary import Progress, RunSummary, silent


def run(settings: Settings, dataset_name: str | None = None, progress: Progress = silent, wait: bool = True) -> RunSummary:
    """Run every missing job of the dataset (the only one when ``dataset_name`` is None);
    with a broker and ``wait`` False, only queue them."""
    with transaction(settings) as session:
        dataset_id = find_dataset(session, dataset_name).id  # a wrong name is said before anything runs
    if settings.broker_url:
        from arena.execution import distributed  # imports Celery only where it is used

        return distributed.dispatch(settings, dataset_id, progress, wait)
    return local.run_missing(settings, dataset_id, progress)
