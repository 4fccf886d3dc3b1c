"""Full logs, downloadable (issue 30): only the tails of container runs' logs were kept (an
attempt's excerpt, the dry run's report); each run's whole log is now an object of the store,
named by the attempt or dry-run row, and downloaded from the submission page by its team and
organizers. Through a real engine: an attack that prints more than a tail holds."""

import re

import pytest
from fastapi.testclient import TestClient

from arena.admin import teams
from arena.data import logs
from arena.db import transaction
from arena.execution import planning
from arena.execution.run import run
from arena.models import Submission
from arena.web.app import create_app
from conftest import make_settings
from factories import submit_folder, synth_dataset, write_submission

ORGANIZER = {"Authorization": "Bearer organizer-secret"}
#: What the attack prints after a line naming its run: 300 lines, past the 200 lines and
#: 4000 bytes of a tail.
PRINTED = "".join(f"line {i} of what the chatty attack says\n" for i in range(1, 301))


def _chatty(folder):
    """An attack that prints a line of its own to each run (``run <uuid>``), then ``PRINTED``
    to stdout, and hands every image back unchanged."""
    script = "#!/bin/sh\nset -e\necho \"run $(cat /proc/sys/kernel/random/uuid)\"\n" \
             "for i in $(seq 1 300); do echo \"line $i of what the chatty attack says\"; done\n" \
             "cp \"$1\"/*.png \"$2\"/\n"
    return write_submission(folder, {"type": "attack", "container": "arena/python:bookworm",
                                     "entry_point": "run_attack.sh"}, {"run_attack.sh": script})


def _printed(log: str) -> bool:
    """Whether ``log`` is all the attack printed in one run: its run's line, then ``PRINTED``."""
    return re.fullmatch(r"run [0-9a-f-]{36}\n", log.removesuffix(PRINTED)) is not None


def _links(page: str) -> list[str]:
    """The page's "Download full log" links: the dry run's first, then one per container run."""
    return re.findall(r'<a href="([^"]+)"(?: id="dry-run-full-log"| class="full-log") download>Download full log</a>', page)


@pytest.mark.docker
def test_a_team_downloads_its_runs_full_logs_and_no_one_else_can(engine, tmp_path):
    settings = make_settings(tmp_path / "arena", organizer_token="organizer-secret", epsilons=[8])
    synth_dataset(settings, 2, batch_size=2)
    chatty = submit_folder(settings, _chatty(tmp_path / "chatty"), tmp_path, team="red")
    assert chatty.status.value == "accepted"
    assert not run(settings).platform_errors
    with transaction(settings) as session:
        red = {"Authorization": f"Bearer {teams.issue_token(session, 'red')}"}
        blue = {"Authorization": f"Bearer {teams.issue_token(session, 'blue')}"}
    client = TestClient(create_app(settings))

    page = client.get(f"/submissions/{chatty.id}", headers=red).text
    dry_run_log, run_log = _links(page)
    assert dry_run_log == f"/submissions/{chatty.id}/dry-run/log"
    tails = client.get(f"/api/submissions/{chatty.id}/logs", headers=red).json()
    assert PRINTED.endswith(tails["dry_run_log_tail"]) and len(tails["dry_run_log_tail"]) < len(PRINTED)
    assert tails["runs"][0]["log_url"] == run_log
    first_run = client.get(run_log, headers=red).text
    assert tails["runs"][0]["log_size"] == len(first_run)
    for link in (dry_run_log, run_log):
        for reader in (red, ORGANIZER):
            answer = client.get(link, headers=reader)
            assert answer.status_code == 200 and _printed(answer.text), link  # every line, not the tail
            assert answer.headers["content-type"] == "text/plain; charset=utf-8"
            assert answer.headers["content-disposition"].startswith("attachment;")
        for stranger in (blue, {}):  # as for hidden things: nothing says there is a log
            assert client.get(link, headers=stranger).status_code == 404, link
    assert _links(client.get(f"/submissions/{chatty.id}", headers=blue).text) == []

    with transaction(settings) as session:  # a re-run: the run's attempts are replaced
        planning.forget(session, session.get(Submission, chatty.id))
    assert not run(settings).platform_errors
    # the old run's log is no one's any more (SQLite may give its attempt's id to the new run: then it is that run's)
    assert client.get(run_log, headers=red).text != first_run
    _, rerun_log = _links(client.get(f"/submissions/{chatty.id}", headers=red).text)
    again = client.get(rerun_log, headers=red).text
    assert _printed(again) and again != first_run


def test_a_log_past_the_cap_is_cut_with_a_line_saying_so(tmp_path):
    settings = make_settings(tmp_path / "arena", full_log_bytes=100)
    kept = logs.keep(settings, b"x" * 250)
    body = logs.read(settings, kept.sha256)
    assert body.startswith(b"x" * 100 + b"\n[arena] the log is cut here: its first 100 of 250 bytes are kept")
    assert kept.size == len(body) and b"x" * 101 not in body
    assert logs.read(settings, logs.keep(settings, b"short").sha256) == b"short"
    assert logs.keep(settings, None) is None  # a run whose full log is not collected
