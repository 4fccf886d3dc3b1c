"""A whole two-round competition played in Chromium, as an organizer and two teams live it
(issue 30): the organizer makes a hidden final and sets dev's quota on /rounds; two teams
sign up, log in and upload to dev (real dry runs in containers, by the web's own checker); one
is refused past its quota, told why and when to retry, still logged in; each sees its entry
checked, its own row on the leaderboard and its own logs, not the other's; the organizer
closes dev, carries its counting entries into the final, runs it (the web's runner, real
containers), publishes it through its confirm step and downloads the bundle, whose manifest
matches the stored hashes. Then, with the same state, the key pages at 375 px wide, where
nothing may run off the screen.

Kept short on purpose (the suite's time is spent): 2 images, one ε, the cheapest samples
(noop, decoder), the flow once at 1280 px and only the visits at 375 px."""

import io
import json
import zipfile

import pytest
from sqlalchemy import select

from arena.admin import tournament
from arena.competition import rounds
from arena.db import transaction
from arena.intake.archive import pack
from arena.models import Submission
from arena.results import bundle
from arena.web.app import create_app
from conftest import SAMPLES, make_settings, wait_until
from factories import synth_dataset
from test_web_tournament import _log_in, browser  # noqa: F401 - the Chromium fixture
from web_server import live_server

pytestmark = pytest.mark.docker
ORGANIZER = "organizer-secret"
WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 375, "height": 740}


@pytest.fixture
def competition(engine, tmp_path):
    """Round dev (live, 2 images, ε 8) open to sign-ups; dataset final-images with no round yet."""
    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER, epsilons=[8])
    synth_dataset(settings, 2, batch_size=2, name="dev")
    synth_dataset(settings, 2, batch_size=2, name="final-images")
    with transaction(settings) as session:
        session.delete(rounds.find(session, "final-images"))  # as `dataset import --round ""` leaves it
        tournament.update(session, self_registration=True)
    return settings


def _sign_up_and_upload(browser, url: str, team: str, sample: str, tmp_path):  # noqa: F811
    """A team signs up, logs in with the token it was shown and uploads to dev; its page."""
    page = browser.new_context(viewport=WIDE).new_page()
    page.goto(f"{url}/register")
    page.fill("input[name=team]", team)
    page.fill("input[name=member]", f"{team} lead")
    page.click("#register-form button")
    token = page.inner_text("#token").strip()
    page.click("text=Log in with it")
    page.fill("#token", token)
    page.click("form.stack button")
    page.wait_for_url(f"{url}/")
    assert f"team {team}" in page.inner_text("header .who")
    page.click("header >> text=Upload")
    page.select_option("select[name=round]", "dev")  # the final takes uploads too: the team says which
    page.set_input_files("input[name=archive]", str(pack(SAMPLES / sample, tmp_path / f"{sample}.tar.gz")))
    page.click("#upload-button")
    page.wait_for_url(f"{url}/submissions/*")
    assert "Jobs on dev" in page.inner_text("#main")  # the round it was uploaded to, not the newest
    return page


def _no_sideways_scroll(page, url: str, paths: list[str]) -> None:
    for path in paths:
        assert page.goto(f"{url}{path}").status == 200, path
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), path


def test_an_organizer_and_two_teams_play_a_two_round_competition_in_chromium(competition, browser, tmp_path):  # noqa: F811
    settings = competition
    with live_server(create_app(settings)) as url:
        organizer = browser.new_context(viewport=WIDE).new_page()
        _log_in(organizer, url, ORGANIZER)
        organizer.goto(f"{url}/rounds")
        form = organizer.locator("#round-create")
        form.locator("input[name=name]").fill("final")
        form.locator("select[name=dataset]").select_option("final-images")
        form.locator("input[name=hidden]").check()
        form.locator("button").click()
        assert organizer.inner_text("#rounds-notice").startswith("Round final created on dataset final-images")
        organizer.click("text=Change dev")
        organizer.fill("#set-1 input[name=daily_quota]", "1")
        organizer.click("#set-1 button")
        assert "quota 1 a day" in organizer.inner_text("#rounds-notice")

        alpha = _sign_up_and_upload(browser, url, "alpha", "noop", tmp_path)
        bravo = _sign_up_and_upload(browser, url, "bravo", "decoder", tmp_path)
        for page in (alpha, bravo):  # each page reloads itself while its dry run is to come or running
            page.wait_for_selector("h2 .status.accepted", timeout=90_000)
        assert "Jobs on dev" in alpha.inner_text("#main")
        assert alpha.locator("#dry-run-log").count() == 1  # its own dry run's log (noop's is empty, and says so)
        alpha.click("header >> text=Upload")  # a second attack today: past dev's quota, refused before any work
        assert "Uploads left now: attack 0" in alpha.inner_text(".round-banner[data-round=dev]")
        alpha.select_option("select[name=round]", "dev")
        alpha.set_input_files("input[name=archive]", str(pack(SAMPLES / "random_noise", tmp_path / "noise.tar.gz")))
        alpha.click("#upload-button")
        refusal = alpha.inner_text("#main")
        assert "has used its 1 attack uploads of the last 24 hours" in refusal and "the next is allowed at" in refusal, refusal
        assert alpha.locator("#error-back").count() == 1 and "team alpha" in alpha.inner_text("header .who")
        decoder_page = bravo.url

        alpha.goto(decoder_page)  # another team's entry: no logs
        assert alpha.locator("#dry-run-log").count() == 0
        assert "Logs are shown to the submission's team" in alpha.inner_text("#main")
        alpha.click("header >> text=Leaderboards")  # the round of the page just read: dev
        assert alpha.inner_text("#round-switcher").startswith("Round: dev")
        assert "noop" in alpha.inner_text("#board-attack tr.mine")
        assert alpha.locator("#board-defense tr.mine").count() == 0  # bravo's row is not alpha's

        organizer.goto(f"{url}/rounds")
        organizer.locator("#actions-1").get_by_role("button", name="Close uploads").click()
        organizer.locator("#actions-2").get_by_role("button", name="Carry").click()
        assert organizer.inner_text("#rounds-notice").startswith("2 entries carried into final.")
        organizer.click("#run-carried")
        organizer.click("#run-button")
        wait_until(lambda: organizer.goto(f"{url}/organizer?dataset=final-images")
                   and organizer.locator("#nothing-missing").count() == 1, 120, "the final's jobs to be done", every=1)

        alpha.goto(f"{url}/?dataset=final-images")
        assert "The results of round final are hidden until the organizers publish it." in alpha.inner_text("#main")
        assert alpha.locator("#board-attack").count() == 0

        organizer.goto(f"{url}/rounds")
        organizer.locator("#actions-2").get_by_role("button", name="Publish").click()
        assert organizer.inner_text("#confirm-heading") == "Publish round final?"
        organizer.click("#confirm")
        assert organizer.inner_text("#rounds-notice").startswith("Round final is published")

        alpha.goto(f"{url}/")  # the published final is the round in view now
        assert alpha.inner_text("#round-switcher").startswith("Round: dev · final")
        assert "results published and final" in alpha.inner_text("#round-banner")
        assert "noop" in alpha.inner_text("#board-attack tr.mine")
        alpha.goto(f"{url}/rounds")
        with alpha.expect_download() as download:
            alpha.locator("#rounds tbody tr").nth(1).locator("text=results bundle").click()
        manifest = json.loads(zipfile.ZipFile(io.BytesIO(download.value.path().read_bytes())).read("manifest.json"))
        with transaction(settings) as session:
            stored = {s.name: s.sha256 for s in session.scalars(select(Submission))}
            assert manifest["dataset"]["sha256"] == bundle.dataset_sha256(session, rounds.find(session, "final").dataset_id)
        assert {s["name"]: s["code_sha256"] for s in manifest["submissions"]} == stored
        assert all(s["counting"] and s["carried"] for s in manifest["submissions"])

        for page, paths in ((alpha, ["/", "/matrix", "/rounds", "/my", decoder_page.removeprefix(url), "/upload"]),
                            (organizer, ["/", "/rounds", "/organizer", "/submissions", "/organizer?dataset=dev"])):
            page.set_viewport_size(PHONE)
            _no_sideways_scroll(page, url, paths)
        # a phone's leaderboards fold their glossaries (three open ones made the page 4,900 px tall) ...
        assert alpha.goto(f"{url}/").ok and alpha.evaluate("document.scrollingElement.scrollHeight") < 2500
        # ... and an organizer's round buttons are on the screen, not beyond a table's sideways scroll
        organizer.goto(f"{url}/rounds")
        for button in organizer.locator(".round-actions button").all():
            box = button.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], button.inner_text()
        for page in (organizer, alpha, bravo):
            page.context.close()
