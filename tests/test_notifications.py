"""Notices to teams and organizers through real servers: an SMTP server (aiosmtpd, in this
process, on a free loopback port) and an HTTP receiver for the webhook; the dry run in a real
container. Each server is started and stopped by the test that needs it."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from arena import actions, notifications
from arena.admin import teams
from arena.db import transaction
from arena.models import SubmissionStatus
from conftest import make_settings
from factories import synth_dataset, write_submission
from servers import free_port


class _Inbox:
    """What the SMTP server was given: (recipients, parsed message)."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], object]] = []

    async def handle_DATA(self, _server, session, envelope):  # noqa: N802 - aiosmtpd's handler hook
        self.mails.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[str, _Inbox]]:
    inbox, port = _Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", inbox
    finally:
        controller.stop()


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/arena", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_a_team_is_mailed_its_dry_run_s_verdict_and_its_round_s_publication(tmp_path):
    from arena.execution.checking import submit
    from arena.intake.archive import pack

    with smtp_server() as (smtp_url, inbox), webhook_receiver() as (webhook_url, posted):
        settings = make_settings(tmp_path / "arena", smtp_url=smtp_url, webhook_url=webhook_url,
                                 mail_from="cup@example.org")
        synth_dataset(settings, 10, batch_size=10)
        with transaction(settings) as session:
            teams.register(session, "red", "Grace", "grace@example.org")
            teams.add_member(session, "red", "Alan", "ask at the desk")  # not an address: not mailed
            teams.register(session, "blue", "Ada", "ada@example.org")  # no entry in the round: not mailed
        folder = write_submission(tmp_path / "broken", {"type": "attack", "container": "arena/python:bookworm",
                                                        "entry_point": "run_attack.sh"},
                                  {"run_attack.sh": "#!/bin/sh\necho 'weights not found' >&2\nexit 3\n"})
        rejected = submit(settings, pack(folder, tmp_path / "broken.tar.gz"), team="red")
        assert rejected.status is SubmissionStatus.REJECTED
        actions.publish_round(settings, "synthetic")  # its one entry was rejected: no job to wait for

    assert [(to, mail["Subject"]) for to, mail in inbox.mails] == [
        (["grace@example.org"], "broken: rejected"), (["grace@example.org"], "Round synthetic: results published")]
    verdict = inbox.mails[0][1]
    assert verdict["From"] == "cup@example.org" and "the attack exit code 3" in verdict.get_content()
    assert [p["event"] for p in posted] == ["dry_run_done", "round_published"]
    assert posted[0]["status"] == "rejected" and posted[0]["team"] == "red" and "exit code 3" in posted[0]["reason"]


def test_a_mail_server_that_does_not_answer_changes_nothing_but_the_log(tmp_path, caplog):
    """Sending never fails the work it reports: the verdict is stored before, and stands."""
    settings = make_settings(tmp_path / "arena", smtp_url=f"smtp://127.0.0.1:{free_port()}",
                             webhook_url=f"http://127.0.0.1:{free_port()}/nobody")
    notice = notifications.Notice("dry_run_done", "x: accepted", "body", ("grace@example.org",), {"status": "accepted"})
    notifications.send(settings, notice)
    assert "mailing 'x: accepted' to 1 recipients failed" in caplog.text
    assert "posting the dry_run_done event to the webhook failed" in caplog.text
