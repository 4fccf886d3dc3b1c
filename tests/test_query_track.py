"""The query track through real containers, under runc and gVisor's runsc: a query-track
attack talks to a served defense through Arena alone (docs/query-track.md), which counts
every query per image, refuses those past the budget, and scores what the attack returns.

Kept small (three images, budgets of tens of queries, the boundary attack's sandbox test
under runsc alone as the round's test runs it under runc): the module runs in under a
minute on two cores.
"""

import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from arena import db
from arena.cli import app
from arena.config import SandboxLimits, get_settings
from arena.db import transaction
from arena.intake.metadata import Metadata
from arena.models import Image, JobStatus, QueryJob, QueryResult, SubmissionStatus
from arena.sandbox.attack_run import CleanInput
from arena.sandbox.query_run import QueryTask, execute_query_attack
from conftest import SAMPLES, make_settings, require_runtime
from factories import NAMING_KEY, submit_folder, synth_dataset, write_submission

RUNTIMES = [None, "runsc"]

#: An attack that asks for one label more than its budget allows, logs Arena's answer, and
#: still writes an output: noise the decoder labels wrongly.
OVERSPENDER = '''
import os
import sys
from pathlib import Path
import numpy as np
from PIL import Image

def ask(name, image):
    data = memoryview(f"query {name} 1\\n".encode() + image.tobytes())
    while data:
        data = data[os.write(1, data):]
    return sys.stdin.buffer.readline().decode().strip()

inputs, outputs, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
for path in sorted(Path(inputs).glob("*.png")):
    clean = np.asarray(Image.open(path).convert("RGB"))
    answers = [ask(path.name, clean) for _ in range(budget + 1)]
    print(f"{path.name} last answer: {answers[-1]}", file=sys.stderr)
    noisy = clean.copy()
    noisy[::2, ::2, 0] = 255 - noisy[::2, ::2, 0]
    Image.fromarray(noisy).save(Path(outputs) / path.name)
'''


@pytest.fixture(params=RUNTIMES, ids=["runc", "runsc"])
def runtime(request, engine) -> str | None:
    if request.param:
        require_runtime(request.param)
    return request.param


@pytest.fixture
def settings(tmp_path, runtime):
    return make_settings(tmp_path / "arena", sandbox=SandboxLimits(memory="512m", runtime=runtime),
                         query_seconds_per_image=20.0, serving_start_seconds=30.0)


def _inputs(settings, images: int = 3) -> list[CleanInput]:
    synth_dataset(settings, images, batch_size=images)
    with transaction(settings) as session:
        return [CleanInput(i.id, i.sha256, i.target_class, i.name) for i in session.scalars(select(Image).order_by(Image.id))]


def _task(settings, attack: Path, budget: int) -> QueryTask:
    return QueryTask(Metadata.read(attack).code(attack), Metadata.read(SAMPLES / "decoder").code(SAMPLES / "decoder"),
                     _inputs(settings), [2, 8], budget, 5.0, NAMING_KEY)


@pytest.mark.parametrize("runtime", ["runsc"], indirect=True)  # under runc: the round's test below
def test_a_boundary_attack_finds_adversarials_within_budget_and_its_queries_are_counted(settings):
    outcome = execute_query_attack(settings, _task(settings, SAMPLES / "boundary", budget=20))
    assert outcome.attack_run.succeeded, outcome.attack_run.log_tail
    assert outcome.defense_failure is None and outcome.problems == []
    logged = {name: int(used) for name, used in re.findall(r"(\w+)\.png: (\d+) queries", outcome.attack_run.log_tail)}
    assert sorted(logged.values()) == sorted(r.queries for r in outcome.results)  # what Arena counted is what it asked
    with transaction(settings) as session:
        true_labels = dict(session.execute(select(Image.id, Image.true_label)).all())
    for result in outcome.results:
        assert 0 < result.queries <= 20 and result.refused == 0
        assert not result.missing and result.l2 > 0
        assert result.label is not None and result.label != true_labels[result.image_id]  # adversarial


def test_a_query_past_the_budget_is_refused_and_the_output_still_scored(settings, tmp_path):
    attack = write_submission(tmp_path / "overspender", {"type": "query_attack", "container": "arena/python:bookworm",
                                                         "entry_point": "run.sh"},
                              {"run.sh": "#!/bin/sh\nexec python3 attack.py \"$@\"\n", "attack.py": OVERSPENDER})
    outcome = execute_query_attack(settings, _task(settings, attack, budget=3))
    assert outcome.attack_run.succeeded, outcome.attack_run.log_tail
    assert "last answer: refused budget: 1 queries asked, 0 of 3 left for" in outcome.attack_run.log_tail
    assert [(r.queries, r.refused) for r in outcome.results] == [(3, 1)] * 3
    assert [(r.missing, r.linf > 0, r.label is not None) for r in outcome.results] == [(False, True, True)] * 3, outcome
    assert all(set(r.labels_at) == {2, 8} for r in outcome.results)


def test_a_round_runs_its_query_jobs_and_stores_what_arena_counted(tmp_path, monkeypatch, engine):
    """Through intake (the attack's dry run answered by a stand-in), planning, `arena run`
    (the query job claimed, leased and stored as the batch jobs are) and the CLI: the stored counts are the queries the attack says it made, and its outputs
    fool the decoder."""
    for name, value in {"DATA_DIR": str(tmp_path / "arena"), "SANDBOX_MEMORY": "512m",
                        "QUERY_SECONDS_PER_IMAGE": "20", "SERVING_START_SECONDS": "30"}.items():
        monkeypatch.setenv(f"ARENA_{name}", value)
    get_settings.cache_clear()
    settings = get_settings()
    db.upgrade(settings)
    synth_dataset(settings, 3, batch_size=3)
    decoder = submit_folder(settings, SAMPLES / "decoder", tmp_path)
    assert decoder.status is SubmissionStatus.ACCEPTED
    assert decoder.validation_report["serving"] | {"seconds": 0} == {"images": 3, "differing": 0, "share": 0.0,
                                                                    "failure": None, "seconds": 0}
    assert submit_folder(settings, SAMPLES / "boundary", tmp_path).status is SubmissionStatus.ACCEPTED
    runner = CliRunner()
    assert runner.invoke(app, ["query", "set", "synthetic", "--budget", "30"]).exit_code == 0
    ran = runner.invoke(app, ["run"])  # the engine's in-process pool runs the query job beside the batch jobs
    assert ran.exit_code == 0 and "1 query jobs" in ran.output, ran.output
    assert "0 query job(s) run" in runner.invoke(app, ["query", "run"]).output  # nothing left for it
    with transaction(settings) as session:
        job = session.scalars(select(QueryJob)).one()
        stored = {name: queries for name, queries in session.execute(
            select(Image.name, QueryResult.queries).join(QueryResult, QueryResult.image_id == Image.id))}
        assert job.status is JobStatus.DONE and job.budget == 30 and job.defense_failure is None, job.problems
        assert job.attempt == 1 and job.worker_id is not None and job.lease_expires_at is None
        logged = sorted(int(used) for used in re.findall(r"\w+\.png: (\d+) queries", job.attack_log))
    assert sorted(stored.values()) == logged and all(0 < used <= 30 for used in logged)
    scores = runner.invoke(app, ["query", "scores"])
    assert scores.exit_code == 0 and "boundary" in scores.output and "decoder" in scores.output, scores.output
    assert runner.invoke(app, ["query", "export", str(tmp_path / "cells.csv")]).exit_code == 0
    cells = pd.read_csv(tmp_path / "cells.csv")
    assert len(cells) == 3 and cells["adversarial"].all() and (cells["queries"] <= 30).all()
    assert runner.invoke(app, ["round", "bundle", "synthetic", str(tmp_path / "bundle.zip")]).exit_code == 0
    with zipfile.ZipFile(tmp_path / "bundle.zip") as bundle:
        assert bundle.read("query_cells.csv").decode() == (tmp_path / "cells.csv").read_text()
        assert json.loads(bundle.read("manifest.json"))["round"]["query_budget"] == 30
    get_settings.cache_clear()
