"""Whole tournaments on a real Docker engine: 2 attacks, 1 targeted attack, 2 defenses,
2 epsilons, 2 batches. The expected matrices are computed here, in-process, by running
the sample submissions' own Python functions on the same images; the platform must
arrive at exactly the same numbers through containers, opaque names, clipping, the
database and pandas."""

import importlib.util
import json
import re

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena import cli
from arena.config import EpsilonSchedule, get_settings
from arena.data.images import ImageStore
from arena.db import transaction
from arena.execution import planning
from arena.execution.run import run
from arena.models import AdversarialImage, AttackJob, Classification, DefenseJob, Image
from arena.results.export import export
from arena.results.scoring import Standings
from arena.web.app import create_app
from conftest import SAMPLES, assert_tallies_match_a_rebuild, make_settings
from factories import copy_arena, submit_folder, synth_dataset, variant

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
EPSILONS = [2, 8]  # two: what depends on ε is compared across them; ε 8 is the views' default
ATTACKS = ["noop", "random_noise", "step_to_target"]
DEFENSES = ["decoder", "smoothed_decoder"]


def _module(sample: str, file: str):
    spec = importlib.util.spec_from_file_location(f"{sample}_{file}", SAMPLES / sample / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expected_attack(name: str, pixels: np.ndarray, png: bytes, target: int, eps: int) -> np.ndarray:
    if name == "noop":
        return pixels
    if name == "random_noise":
        return _module("random_noise", "attack.py").perturb(pixels, png, eps)
    return _module("step_to_target", "attack.py").step(pixels, target, eps)


def expected_errors(settings, dataset) -> dict[tuple[str, str, int], int]:
    store = ImageStore(settings.store_dir)
    classify = {d: _module(d, "defense.py").classify for d in DEFENSES}
    with transaction(settings) as session:
        images = session.scalars(select(Image).where(Image.dataset_id == dataset.id)).all()
    counts = {}
    for image in images:
        png = store.read_bytes(image.sha256)
        pixels = store.read_pixels(image.sha256)
        for attack in ATTACKS:
            for eps in EPSILONS:
                adversarial = _expected_attack(attack, pixels, png, image.target_class, eps)
                for defense in DEFENSES:
                    key = (attack, defense, eps)
                    counts[key] = counts.get(key, 0) + int(classify[defense](adversarial) != image.true_label)
    return counts


@pytest.fixture(scope="module")
def tournament(tmp_path_factory, engine):
    """One finished tournament shared by the tests below (it costs about 80 container runs),
    never changed by them: a test that changes it takes ``own_copy``."""
    root = tmp_path_factory.mktemp("tournament")
    settings = make_settings(root / "arena", epsilons=EPSILONS)
    dataset = synth_dataset(settings, 100, batch_size=50)
    for name in ATTACKS + DEFENSES:
        assert submit_folder(settings, SAMPLES / name, root).status.value == "accepted"
    summary = run(settings)
    return settings, dataset, summary


@pytest.fixture
def own_copy(tournament, tmp_path):
    """The finished tournament copied into this test's folder, to add to or rerun: the
    shared one stays as the other tests, in whatever order they run, expect it."""
    settings, dataset, summary = tournament
    return copy_arena(settings, tmp_path / "arena"), dataset, summary


def _standings(settings, dataset) -> Standings:
    with transaction(settings) as session:
        return Standings.compute(session, dataset)


def test_every_job_ran_once(tournament):
    settings, dataset, summary = tournament
    assert summary.attack_jobs == len(ATTACKS) * len(EPSILONS) * 2
    assert summary.defense_jobs == len(DEFENSES) * (summary.attack_jobs + 2)
    assert summary.platform_errors == []
    with transaction(settings) as session:
        assert session.scalar(select(func.count()).select_from(Classification)) == len(DEFENSES) * (len(ATTACKS) * len(EPSILONS) + 1) * 100
        assert planning.plan(session, dataset, EPSILONS, EpsilonSchedule.ALL) == planning.Plan(0, 0)
    assert_tallies_match_a_rebuild(settings)


def test_matrix_matches_the_submissions_run_in_process(tournament):
    settings, dataset, _ = tournament
    expected = expected_errors(settings, dataset)
    standings = _standings(settings, dataset)
    for eps in EPSILONS:
        matrix = standings.matrix("error", eps)
        for attack in ATTACKS:
            for defense in DEFENSES:
                assert matrix.loc[attack, defense] == expected[(attack, defense, eps)], (attack, defense, eps)
    overall = standings.matrix("error")
    assert overall.loc["noop"].tolist() == [0, 0]
    assert overall.loc["random_noise", "smoothed_decoder"] == 0  # averaging cancels random noise
    assert overall.loc["random_noise", "decoder"] > 0
    noise = [expected[("random_noise", "decoder", eps)] for eps in EPSILONS]
    assert noise == sorted(noise) and noise[-1] > noise[0]  # stronger with eps
    assert standings.defense_leaderboard()["clean_accuracy"].tolist() == [1.0, 1.0]


def test_stored_adversarial_images_respect_epsilon(tournament):
    settings, _, _ = tournament
    with transaction(settings) as session:
        rows = session.execute(select(AttackJob.epsilon, AdversarialImage.linf, AdversarialImage.missing,
                                      AdversarialImage.l2).join(AttackJob)).all()
    assert rows and all(linf <= eps and not missing for eps, linf, missing, _ in rows)
    assert {eps for eps, linf, _, _ in rows if linf == eps} == set(EPSILONS)
    # L2 recorded on every image: zero exactly when nothing changed, within what L-infinity allows
    assert all(l2 is not None and (l2 == 0) == (linf == 0) and l2 <= linf * np.sqrt(299 * 299 * 3) + 1e-6
               for _, linf, _, l2 in rows)


def test_every_view_gives_the_same_worst_case_and_intervals(tournament, tmp_path, monkeypatch):
    """The worst case per defense, recomputed here in pandas from the exported per-image
    answers, is what the export, the API, the web page and the CLI show, with the same
    intervals; the matrix cells' intervals on the page are the API's."""
    settings, dataset, _ = tournament
    with transaction(settings) as session:
        export(session, dataset, tmp_path / "out")
    per_image = pd.read_parquet(tmp_path / "out" / "classifications.parquet")
    assert _standings(settings, dataset).defense_leaderboard()["clean_accuracy"].tolist() == [1.0, 1.0]
    broken = per_image.groupby(["defense", "epsilon", "image_id"])["error"].any()  # every clean answer is right
    expected = (~broken).groupby("defense").mean()
    assert 0 < expected.min() and expected.max() < 1  # something to tell apart

    written = pd.read_csv(tmp_path / "out" / "robust_accuracy.csv").set_index("submission")
    board = pd.read_csv(tmp_path / "out" / "defense_results.csv").set_index("submission")
    client = TestClient(create_app(settings))
    api = {row["submission"]: row for row in client.get("/api/leaderboards/defense").json()}
    home = client.get("/").text
    page = _page_cells(home, "board-defense")
    for defense, cells in _page_cells(home, "board-defense-worst").items():  # folded under the board
        page[defense].update(cells)
    monkeypatch.setenv("ARENA_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    monkeypatch.setattr(cli.console, "width", 1000)  # the defense board on one line a row
    printed = CliRunner().invoke(cli.app, ["leaderboard", "--wide"])
    get_settings.cache_clear()
    assert printed.exit_code == 0, printed.output
    for defense in DEFENSES:
        figure = [written.loc[defense, f"worst_case{part}"] for part in ("", "_low", "_high")]
        assert figure[0] == pytest.approx(expected[defense]) and figure[1] <= figure[0] <= figure[2] and figure[1] < figure[2]
        assert [board.loc[defense, f"worst_case{part}"] for part in ("", "_low", "_high")] == figure
        assert [api[defense][f"worst_case{part}"] for part in ("", "_low", "_high")] == figure
        assert page[defense]["worst case"] == tuple(figure)
        assert f"{100 * figure[0]:.1f} [{100 * figure[1]:.1f}, {100 * figure[2]:.1f}]" in printed.output
        for eps in EPSILONS:
            key = f"worst_case_eps={eps}"
            assert api[defense][key] == written.loc[defense, key] == page[defense][f"worst ε={eps}"][0]
        for column, key in (("score", "score"), ("normalized", "normalized"), ("ε=8", "eps=8")):
            assert page[defense][column] == tuple(api[defense][f"{key}{part}"] for part in ("", "_low", "_high"))
    matrix = client.get("/api/matrix", params={"eps": 8}).json()
    heatmap = client.get("/matrix?eps=8").text  # its cells are drawn by the browser from the matrix it carries
    carried = json.loads(re.search(r'id="heatmap-cells">(.*?)</script>', heatmap, re.S).group(1))
    assert (carried["low"], carried["high"]) == (matrix["low"], matrix["high"])
    assert "95% interval {low_pct}–{high_pct}%" in heatmap  # each cell's hover text: tests/test_web_tournament.py


def _page_cells(page: str, table: str) -> dict[str, dict[str, tuple]]:
    """A leaderboard of the page: by submission, each column's (value, low, high) as the cells
    carry them (data-value, and the interval's data-low and data-high)."""
    body = re.search(rf'<table class="sortable" id="{table}">(.*?)</table>', page, re.S).group(1)
    headers = [re.sub(r"<[^>]+>", "", re.sub(r'<a class="explain".*?</a>', "", h)).replace("&epsilon;", "ε").strip()
               for h in re.findall(r"<th[^>]*>(.*?)</th>", body, re.S)]  # the "?" links to /evaluation left out
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], re.S):
        cells = re.findall(r"<td([^>]*)>(.*?)</td>", row, re.S)
        named = dict(zip(headers, cells))
        name = re.sub(r"<[^>]+>", "", named["submission"][1]).strip()
        rows[name] = {}
        for column, (attributes, inner) in named.items():
            value = re.search(r'data-value="([^"]*)"', attributes)
            bounds = re.search(r'data-low="([^"]*)" data-high="([^"]*)"', inner)
            rows[name][column] = tuple(float(v) for v in ([value.group(1)] if value else []) + list(bounds.groups() if bounds else []))
    return rows


def test_adding_a_defense_runs_only_its_column(own_copy, tmp_path):
    settings, dataset, summary = own_copy
    with transaction(settings) as session:
        before = pd.DataFrame(session.execute(select(Classification.defense_job_id, Classification.image_id, Classification.label)).all())
    submit_folder(settings, variant(SAMPLES / "decoder", tmp_path, "decoder_copy"), tmp_path)
    added = run(settings)
    assert added.attack_jobs == 0
    assert added.defense_jobs == summary.attack_jobs + 2
    with transaction(settings) as session:
        after = pd.DataFrame(session.execute(select(Classification.defense_job_id, Classification.image_id, Classification.label)).all())
    assert after.merge(before, on=["defense_job_id", "image_id"], suffixes=("", "_before")).pipe(lambda f: (f["label"] == f["label_before"]).all())
    matrix = _standings(settings, dataset).matrix("error")
    assert matrix["decoder_copy"].tolist() == matrix["decoder"].tolist()


def test_rerunning_everything_gives_the_identical_matrix(own_copy):
    settings, dataset, _ = own_copy
    before = {v: _standings(settings, dataset).matrix(v) for v in ("error", "hit", "correct")}
    with transaction(settings) as session:
        planning.forget(session)
        assert session.scalar(select(func.count(DefenseJob.id))) == 0
    again = run(settings)
    assert again.attack_jobs == len(ATTACKS) * len(EPSILONS) * 2
    after = _standings(settings, dataset)
    for value, frame in before.items():
        pd.testing.assert_frame_equal(frame, after.matrix(value))
    assert_tallies_match_a_rebuild(settings)


def test_export_writes_the_same_matrix(tournament, tmp_path):
    settings, dataset, _ = tournament
    with transaction(settings) as session:
        export(session, dataset, tmp_path)
    written = pd.read_csv(tmp_path / "error_matrix.csv", index_col=0)
    shown = _standings(settings, dataset).matrix("error")
    assert written.to_numpy().tolist() == shown.to_numpy().tolist()
    per_image = pd.read_parquet(tmp_path / "classifications.parquet")
    assert len(per_image) == shown.shape[1] * len(ATTACKS) * len(EPSILONS) * 100
    assert per_image["error"].sum() == shown.to_numpy().sum()
    assert (tmp_path / "error_matrix.png").stat().st_size > 10_000
    assert (tmp_path / "defense_error_by_eps.png").stat().st_size > 10_000
