"""One judging rule: on a tournament with a targeted and an untargeted attack, whose defenses
answer right, on the target, missing, invalid and wrong, every view counts the same errors,
correct answers and hits in every cell: the tallies, the standings, the exported 2017 CSVs
and per-image Parquet, the per-image results API and the image drill-down."""

import itertools
from collections import Counter

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from arena.db import transaction
from arena.execution import pack_run
from arena.models import (
    CellTally,
    Submission,
)
from arena.results.export import MATRICES, export
from arena.results.judging import MatrixValue
from arena.results.scoring import Standings
from arena.web.app import create_app
from conftest import make_settings
from factories import attacked, defense_packs, fake_defenses, synth_dataset

EPSILONS = [2, 8]
ORGANIZER = {"Authorization": "Bearer organizer-secret"}
Cell = tuple[str, str, int]  # attack, defense, epsilon


@pytest.fixture
def tournament(tmp_path, monkeypatch):
    """Attacks A (untargeted) and T (targeted), defenses D and E, 5 images; every job done,
    the defenses answering every case the rule names (target hits for A too)."""
    settings = make_settings(tmp_path / "arena", epsilons=EPSILONS, organizer_token="organizer-secret")
    dataset = synth_dataset(settings, 5, batch_size=5)
    with transaction(settings) as session:
        attacked(session, dataset, EPSILONS)
    fake_defenses(monkeypatch, settings)
    for pack in defense_packs(settings):
        assert pack_run.run_pack(settings, pack).finished == len(pack.job_ids)
    return settings, dataset


def _cells() -> list[Cell]:
    return list(itertools.product("AT", "DE", EPSILONS))


def _from_tallies(settings) -> dict[Cell, Counter]:
    with transaction(settings) as session:
        names = {s.id: s.name for s in session.scalars(select(Submission))}
        rows = session.scalars(select(CellTally)).all()
        return {(names[r.attack_id], names[r.defense_id], r.epsilon):
                Counter(error=r.errors, correct=r.scored - r.errors, hit=r.hits) for r in rows}


def _from_standings(settings, dataset) -> dict[Cell, Counter]:
    with transaction(settings) as session:
        standings = Standings.compute(session, dataset)
    return {(a, d, eps): Counter({str(v): int(standings.matrix(v, eps).loc[a, d]) for v in MatrixValue})
            for a, d, eps in _cells()}


def _from_export(settings, dataset, folder) -> tuple[dict[Cell, Counter], dict[Cell, Counter]]:
    with transaction(settings) as session:
        export(session, dataset, folder)
    csvs = {(a, d, eps): Counter({str(value): int(pd.read_csv(folder / f"{stem}_eps{eps}.csv", index_col=0).loc[a, d])
                                  for stem, value in MATRICES.items()}) for a, d, eps in _cells()}
    per_image = pd.read_parquet(folder / "classifications.parquet")
    return csvs, _count((row.attack, row.defense, row.epsilon, row.error, row.hit) for row in per_image.itertuples())


def _count(judged) -> dict[Cell, Counter]:
    counts: dict[Cell, Counter] = {}
    for attack, defense, epsilon, error, hit in judged:
        counts.setdefault((attack, defense, int(epsilon)), Counter()).update(
            error=int(error), correct=int(not error), hit=int(hit))
    return counts


def test_every_view_judges_every_cell_alike(tournament, tmp_path):
    settings, dataset = tournament
    tallies = _from_tallies(settings)
    assert set(tallies) == set(_cells())
    assert all(sum(c.values()) > 0 for c in tallies.values())
    assert tallies[("A", "D", 2)]["hit"] > 0, "the untargeted attack's target hits must be there to compare"
    csvs, parquet = _from_export(settings, dataset, tmp_path / "export")
    client = TestClient(create_app(settings))
    names = {row["id"]: row["name"] for row in client.get("/api/submissions").json()}
    rows = client.get("/api/results", params={"limit": 10_000}, headers=ORGANIZER).json()
    api = _count((names[r["attack_id"]], names[r["defense_id"]], r["epsilon"], r["error"], r["hit"]) for r in rows)
    drilled = []
    for adversarial_id in sorted({r["adversarial_image_id"] for r in rows}):
        image = client.get(f"/api/adversarial/{adversarial_id}", headers=ORGANIZER).json()
        drilled += [(image["attack"], a["defense"], image["epsilon"], not a["correct"], a["hit"]) for a in image["answers"]]
    views = {"standings": _from_standings(settings, dataset), "2017 CSVs": csvs, "per-image Parquet": parquet,
             "/api/results": api, "drill-down": _count(drilled)}
    for name, view in views.items():
        assert view == tallies, f"{name} judges differently from the tallies"
