"""The study report's generator (``arena study`` writes docs/study.md with it) on a small
synthetic tournament carrying the study's submission names, the defenses answered without
containers: its rates carry the intervals and its worst-case table agrees with the
leaderboards. (The real study's data takes hours of real models and is not rebuilt here.)"""

import re

import pytest

from arena.db import transaction
from arena.execution import pack_run
from arena.models import SubmissionKind
from arena.results.leaderboards import Leaderboards
from arena.results.scoring import Standings
from arena.sandbox.containers import RunResult
from arena.sandbox.defense_run import DefenseOutcome
from arena.sandbox.result_csv import Answer
from arena.tools.study_report import ATTACK_ORDER, FILTERED, UNFILTERED, write_report
from conftest import make_settings
from factories import attacked, defense_packs, fake_defenses, synth_dataset

EPSILONS = [2, 4, 8, 16]
SUBMISSIONS = ([(name, SubmissionKind.TARGETED_ATTACK if name.startswith("targeted") else SubmissionKind.ATTACK)
                for name in ATTACK_ORDER] + [(name, SubmissionKind.DEFENSE) for name in UNFILTERED + list(FILTERED)])


def _mixed(labels, inputs) -> DefenseOutcome:
    """Right on four fifths of the inputs, by a rule of the image and its place in the run (which
    differs from one attack's output to the next)."""
    answers = {}
    for item in inputs:
        truth, _ = labels[item.sha256]
        answers[item.key] = Answer(truth if (int(item.sha256[:6], 16) + item.key) % 5 else truth % 1000 + 1)
    return DefenseOutcome(RunResult(0, False, None, 0.1, ""), answers)


@pytest.fixture
def study(tmp_path, monkeypatch):
    settings = make_settings(tmp_path / "arena", epsilons=EPSILONS)
    dataset = synth_dataset(settings, 12, batch_size=12)
    with transaction(settings) as session:
        attacked(session, dataset, EPSILONS, SUBMISSIONS)
    fake_defenses(monkeypatch, settings, answer=_mixed)
    for pack in defense_packs(settings):
        assert pack_run.run_pack(settings, pack).finished == len(pack.job_ids)
    return settings, dataset


def test_the_report_gives_its_rates_with_intervals_and_the_worst_case(study, tmp_path):
    settings, dataset = study
    with transaction(settings) as session:
        written = write_report(session, dataset, tmp_path / "docs" / "study.md")
        standings = Standings.compute(session, dataset)
        boards = Leaderboards.load(session, dataset, standings)
    report = written[0].read_text()
    assert all(path.is_file() and path.stat().st_size > 0 for path in written)
    table1 = report.split("## Table 1 analog")[1].split("##")[0]
    cells = re.findall(r"(\d+\.\d) \((\d+\.\d)–(\d+\.\d)\)", table1)
    assert len(cells) == len(ATTACK_ORDER) * len(UNFILTERED)
    assert all(float(low) <= float(rate) <= float(high) for rate, low, high in cells)
    worst = report.split("## Worst case over the attacks")[1].split("## What agrees")[0]
    robust = boards.robust_accuracy.set_index("submission")
    for defense in UNFILTERED + list(FILTERED):
        row = next(line for line in worst.splitlines() if line.startswith(f"| {defense} |"))
        expected = " | ".join(f"{100 * robust.loc[defense, f'worst_case_eps={e}']:.1f} "
                              f"({100 * robust.loc[defense, f'worst_case_eps={e}_low']:.1f}–"
                              f"{100 * robust.loc[defense, f'worst_case_eps={e}_high']:.1f})" for e in EPSILONS)
        assert row.startswith(f"| {defense} | {expected} |"), row
    assert "standard error" not in report and "95% bootstrap interval" in report
