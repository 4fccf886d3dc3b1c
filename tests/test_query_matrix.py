"""The query track's attack x served-defense matrix (docs/query-track.md, "Scoring"), from
rows stored as a run of the round's query jobs leaves them (no container): its two views
against values worked out by hand, /api/matrix?track=query and the /matrix page carrying
them, hidden with their round, and `arena export` writing its files."""

import math
import zipfile

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from arena import job_states
from arena.admin.teams import issue_token
from arena.cli import app as cli
from arena.competition import rounds
from arena.config import get_settings
from arena.db import transaction
from arena.models import Batch, Image, QueryJob, QueryResult, SubmissionKind, Visibility
from arena.results import query_scoring
from arena.results.query_scoring import avc_matrix, judged, results_frame, success_matrix
from arena.web.app import create_app
from conftest import make_settings
from factories import add_submission, synth_dataset
from test_web_heatmap import _cell_facts, _cells_json
from test_web_tournament import browser  # noqa: F401 - the Chromium fixture
from web_server import live_server

ORGANIZER = {"Authorization": "Bearer organizer-secret"}
SERVED = {"serving_entry_point": "serve.sh"}
WRONG, TARGET, TRUE = "wrong", "target", "true"

#: Per (attack, defense), per image: the label as returned (wrong, the target class, or the
#: true one), the output's L2 and the smallest epsilon at which its clipped output keeps that
#: label (smaller ones: the true label). T x D2 never ran.
CELLS = {
    ("A", "D1"): [(WRONG, 3.0, 4), (WRONG, 1.0, 16), (TRUE, 2.0, 2), (WRONG, 5.0, 2)],
    ("A", "D2"): [(WRONG, 2.0, 8), (TRUE, 1.0, 2), (TRUE, 1.0, 2), (WRONG, 6.0, 16)],
    ("T", "D1"): [(TARGET, 7.0, 2), (WRONG, 1.0, 2), (TARGET, 3.0, 16), (TARGET, 1.0, 4)],
}
# By hand. The AVC rule per cell: A x D1: 3, 1, inf, 5 -> (3 + 5) / 2 = 4; A x D2: 2, inf, inf,
# 6 -> (6 + inf) / 2 = inf (half failed); T x D1: 7, inf (wrong, not the target), 3, 1 -> 5.
# The boards: A's cells 1 2 3 5 6 inf inf inf -> 5.5, T's 5: T first. D1's smallest per
# image 3 1 3 1 -> 2, D2's 2 inf inf 6 -> inf: D2 first.
# The 2017 rule, successes at eps 2 / 4 / 8 / 16: A x D1 1 2 2 3 (8 of 16 pooled), A x D2
# 0 0 1 2 (3), T x D1 1 2 2 3 (8; the wrong label is no hit).


def _label(kind: str, image: Image) -> int:
    if kind == TRUE:
        return image.true_label
    if kind == TARGET:
        return image.target_class
    return next(c for c in range(1, 1001) if c not in (image.true_label, image.target_class))


@pytest.fixture
def arena(tmp_path):
    """A round with a query attack A, a targeted one T and served defenses D1 and D2, each of
    its own team, and the query results of CELLS stored as finished jobs."""
    settings = make_settings(tmp_path / "arena", organizer_token="organizer-secret")
    synth_dataset(settings, 4, batch_size=4)
    with transaction(settings) as session:
        made = {name: add_submission(session, name, kind, owner=f"team-{name}", meta=meta) for name, kind, meta in [
            ("A", SubmissionKind.QUERY_ATTACK, {}), ("T", SubmissionKind.QUERY_TARGETED, {}),
            ("D1", SubmissionKind.DEFENSE, SERVED), ("D2", SubmissionKind.DEFENSE, SERVED)]}
        batch = session.scalar(select(Batch))
        images = sorted(batch.images, key=lambda image: image.name)
        epsilons = list(rounds.find(session).epsilons)
        assert epsilons == [2, 4, 8, 16]
        for (attack, defense), cells in CELLS.items():
            job = QueryJob(attack=made[attack], defense=made[defense], batch=batch, budget=1000)
            session.add(job)
            session.flush()
            for image, (kind, l2, from_eps) in zip(images, cells):
                label = _label(kind, image)
                session.add(QueryResult(
                    query_job_id=job.id, image_id=image.id, queries=10, refused=0, sha256=image.sha256, linf=9, l2=l2,
                    missing=False, label=label,
                    labels_at={str(e): label if e >= from_eps else image.true_label for e in epsilons}))
            job_states.finish(job)
        token = issue_token(session, "team-A")
    return settings, TestClient(create_app(settings)), token


def test_the_matrix_from_stored_rows_is_the_hand_computed_one(arena):
    settings, _, _ = arena
    with transaction(settings) as session:
        round_ = rounds.find(session)
        cells = judged(results_frame(session, round_), list(round_.epsilons))
    counts, scored = success_matrix(cells, [2, 4, 8, 16])
    assert counts.to_dict("index") == {"A": {"D1": 8, "D2": 3}, "T": {"D1": 8, "D2": 0}}
    assert scored.to_dict("index") == {"A": {"D1": 16, "D2": 16}, "T": {"D1": 16, "D2": 0}}
    assert success_matrix(cells, [2, 4, 8, 16], 16)[0].to_dict("index") == {"A": {"D1": 3, "D2": 2},
                                                                            "T": {"D1": 3, "D2": 0}}
    assert success_matrix(cells, [2, 4, 8, 16], 2)[0].loc["A"].tolist() == [1, 0]
    medians = avc_matrix(cells)
    assert medians.loc["A", "D1"] == 4.0 and math.isinf(medians.loc["A", "D2"]) and medians.loc["T", "D1"] == 5.0
    assert math.isnan(medians.loc["T", "D2"])  # never ran


def test_the_api_serves_both_views_in_the_boards_order(arena):
    _, client, _ = arena
    success = client.get("/api/matrix?track=query&eps=16").json()
    assert (success["track"], success["value"], success["epsilon"], success["budget"]) == ("query", "success", 16, 1000)
    assert success["attacks"] == ["T", "A"] and success["defenses"] == ["D2", "D1"]
    assert success["counts"] == [[0, 3], [2, 3]] and success["answered"] == [[0, 4], [4, 4]]
    assert success["low"][0][0] is None and success["low"][1][1] <= 0.75 <= success["high"][1][1]
    pooled = client.get("/api/matrix?track=query").json()
    assert pooled["epsilon"] is None and pooled["counts"] == [[0, 8], [3, 8]] and pooled["answered"] == [[0, 16], [16, 16]]
    avc = client.get("/api/matrix?track=query&value=avc&eps=4").json()  # the AVC rule takes no epsilon
    assert avc["epsilon"] is None and avc["l2"] == [[None, 5.0], [None, 4.0]] and avc["scale"] == 5.0
    # four images a cell are too few for the sign test's 95% interval: 0 to infinity (null)
    assert avc["l2_low"] == [[None, 0.0], [0.0, 0.0]] and avc["l2_high"] == [[None, None], [None, None]]
    assert avc["counts"] == [[0, 3], [2, 3]] and avc["answered"] == [[0, 4], [4, 4]]
    top = client.get("/api/matrix?track=query&value=avc&top_attacks=1&top_defenses=1").json()
    assert (top["attacks"], top["defenses"], top["l2"]) == (["T"], ["D2"], [[None]])
    assert client.get("/api/matrix").json()["value"] == "error"  # the batch tracks' matrix stays the default
    bad = client.get("/api/matrix?track=query&value=hit")
    assert bad.status_code == 422 and "success, avc" in bad.json()["detail"]
    assert client.get("/api/matrix?track=query&eps=3").status_code == 404


def test_the_page_carries_the_view_it_shows(arena):
    _, client, _ = arena
    page = client.get("/matrix?track=query&value=avc").text
    assert _cells_json(page) == client.get("/api/matrix?track=query&value=avc").json()
    assert "median L2" in page and 'name="eps"' not in page and 'aria-current="page">query' in page
    assert 'href="/api/export/query_avc_matrix.csv?dataset=synthetic"' in page
    success = client.get("/matrix?track=query&eps=8").text
    assert _cells_json(success)["epsilon"] == 8 and "success rate" in success
    batch = client.get("/matrix").text
    assert 'href="/matrix?dataset=synthetic&amp;track=query">query</a>' in batch  # the round ran the query track
    csv = client.get("/api/export/query_avc_matrix.csv").text.splitlines()
    assert csv == ["attack,D1,D2", "A,4.0,inf", "T,5.0,"]


def test_a_hidden_round_s_query_matrix_is_for_organizers_only(arena):
    settings, client, token = arena
    with transaction(settings) as session:
        rounds.find(session).visibility = Visibility.HIDDEN
    client.app.state.standings.recheck()
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        assert client.get("/api/matrix?track=query", headers=headers).status_code == 403
        assert client.get("/api/export/query_success_matrix.csv", headers=headers).status_code == 403
        page = client.get("/matrix?track=query", headers=headers).text
        assert "hidden until the organizers publish it" in page and "heatmap-cells" not in page
    assert client.get("/api/matrix?track=query", headers=ORGANIZER).json()["attacks"] == ["T", "A"]
    assert _cells_json(client.get("/matrix?track=query&value=avc", headers=ORGANIZER).text)["scale"] == 5.0


def test_arena_export_writes_the_query_files_the_bundle_holds(arena, monkeypatch, tmp_path):
    settings, client, _ = arena
    monkeypatch.setenv("ARENA_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["export", str(tmp_path / "out")])
        bundled = CliRunner().invoke(cli, ["round", "bundle", "synthetic", str(tmp_path / "bundle.zip")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for name in ["query_cells.csv", "query_success_matrix.csv", "query_avc_matrix.csv", "query_success_matrix.png",
                 "query_avc_matrix_low.csv", "query_avc_matrix_high.csv",
                 *(f"query_success_matrix_eps{e}.csv" for e in (2, 4, 8, 16))]:
        assert (out / name).is_file(), name
    low, high = (pd.read_csv(out / f"query_avc_matrix_{b}.csv", index_col="attack") for b in ("low", "high"))
    assert low.loc["A"].tolist() == [0.0, 0.0] and math.isinf(high.loc["A", "D1"])  # 4 images: no bound at 95%
    assert math.isnan(low.loc["T", "D2"])  # never ran
    assert pd.read_csv(out / "query_success_matrix.csv", index_col="attack").to_dict("index") == \
        {"A": {"D1": 8, "D2": 3}, "T": {"D1": 8, "D2": 0}}
    assert pd.read_csv(out / "query_success_matrix_eps16.csv", index_col="attack").loc["A"].tolist() == [3, 2]
    assert len(pd.read_csv(out / query_scoring.CELLS_FILE)) == 12
    assert bundled.exit_code == 0, bundled.output
    with zipfile.ZipFile(tmp_path / "bundle.zip") as bundle:
        members = set(bundle.namelist())
        assert {p.name for p in out.iterdir()} <= members  # the bundle holds what `arena export` writes
        for name in ("query_success_matrix.csv", "query_avc_matrix.csv", "query_cells.csv"):
            assert bundle.read(name) == (out / name).read_bytes(), name
    for name in ("query_avc_matrix", "query_avc_matrix_low", "query_avc_matrix_high"):  # the API serves the same
        served = client.get(f"/api/export/{name}.csv")
        assert served.status_code == 200 and served.content == (out / f"{name}.csv").read_bytes(), name


def test_chromium_draws_the_avc_view_from_its_json(arena, browser):  # noqa: F811
    """The AVC cells show their median (∞ where half failed), darker the smaller, grey where
    the pair never ran; the success view its rates, as the batch matrix does."""
    _, client, _ = arena
    with live_server(client.app) as url:
        page = browser.new_page()
        page.goto(f"{url}/matrix?track=query&value=avc")
        cells = {(c["attack"], c["defense"]): c for c in _cell_facts(page)}
        assert {key: c["text"] for key, c in cells.items()} == {("T", "D2"): "", ("T", "D1"): "5.0",
                                                                 ("A", "D2"): "∞", ("A", "D1"): "4.0"}
        assert cells[("T", "D2")]["colour"] == "rgb(238, 238, 238)" and cells[("A", "D2")]["colour"] == "rgba(0, 114, 178, 0)"
        assert cells[("T", "D1")]["colour"] == "rgba(0, 114, 178, 0.2)"  # the largest finite median: the lightest
        assert cells[("A", "D1")]["colour"] == "rgba(0, 114, 178, 0.36)"  # 1 - 0.8 * 4 / 5
        assert cells[("A", "D1")]["title"] == "A vs D1: median L2 4.0 (95% interval 0.0–∞), 3 adversarial of 4 outputs"
        page.goto(f"{url}/matrix?track=query&eps=16")
        cells = {(c["attack"], c["defense"]): c for c in _cell_facts(page)}
        assert cells[("A", "D2")]["text"] == "50" and cells[("A", "D2")]["title"].startswith("A vs D2: 2 succeeded of 4 outputs (50.0%")
        page.close()
