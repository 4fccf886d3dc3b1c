"""The study report's generator (``arena study`` writes docs/study.md with it) on a small
synthetic tournament carrying the study's submission names, the defenses answered without
containers: its tables follow the source document's layout and marks, every paired figure is
McNemar's test on the stored answers, the findings' numbers are the tables', the attack
budgets come from the stored runs, and the worst case agrees with the leaderboards. (The
real study's data takes an hour of real models and is not rebuilt here.)"""

import re
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from arena.db import transaction
from arena.execution import pack_run
from arena.models import AttackJob, Image, JobAttempt, SubmissionKind
from arena.results.leaderboards import Leaderboards
from arena.results.scoring import Standings, load_results
from arena.results.significance import mcnemar_exact
from arena.sandbox.containers import RunResult
from arena.sandbox.defense_run import DefenseOutcome
from arena.sandbox.result_csv import Answer
from arena.tools.study_report import write_report
from arena.tools.study_tables import ATTACK_ORDER, DEFENDERS, access
from conftest import make_settings
from factories import FAKE_CODE, attacked, defense_packs, fake_defenses, synth_dataset

EPSILONS = [2, 4, 8, 16]
SUBMISSIONS = ([(name, SubmissionKind.TARGETED_ATTACK if name.startswith("targeted") else SubmissionKind.ATTACK)
                for name in ATTACK_ORDER] + [(name, SubmissionKind.DEFENSE) for name in DEFENDERS])
UNFILTERED = [d for d in DEFENDERS if not d.startswith("median_")]


def _by_defense(labels, defense: str, inputs) -> DefenseOutcome:
    """Wrong on about a quarter of the inputs unfiltered and two fifths filtered, by a hash of the
    defense, the image and its place in the run: each defense errs on photos of its own, so the
    paired tests have discordant photos to count."""
    wrong_share = 40 if defense.startswith("median_") else 25
    answers = {}
    for item in inputs:
        truth, _ = labels[item.sha256]
        wrong = zlib.crc32(f"{defense}/{item.sha256}/{item.key}".encode()) % 100 < wrong_share
        answers[item.key] = Answer(truth % 1000 + 1 if wrong else truth)
    return DefenseOutcome(RunResult(0, False, None, 0.1, ""), answers)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    tmp_path = tmp_path_factory.mktemp("study")
    settings = make_settings(tmp_path / "arena", epsilons=EPSILONS)
    dataset = synth_dataset(settings, 30, batch_size=30)
    with transaction(settings) as session:
        ids = attacked(session, dataset, EPSILONS, SUBMISSIONS)
        for job in session.scalars(select(AttackJob).where(AttackJob.submission_id == ids["ifgsm"])):
            # one container run of 30 photos in 12 s: 40 s per 100 photos, 8% of the 500 s limit
            session.add(JobAttempt(attack_job_id=job.id, run_id=None, seconds=12.0, images=30))
    fake_defenses(monkeypatch, settings)
    with transaction(settings) as session:
        labels = {i.sha256: (i.true_label, i.target_class) for i in session.scalars(select(Image))}
    # the fake code carries the defense's name, so each defense answers by a rule of its own
    monkeypatch.setattr(pack_run, "submission_code", lambda _s, submission: replace(FAKE_CODE, root=Path(submission.name)))
    monkeypatch.setattr(pack_run, "execute_defense",
                        lambda _s, code, inputs, _key: _by_defense(labels, code.root.name, inputs))
    for pack in defense_packs(settings):
        assert pack_run.run_pack(settings, pack).finished == len(pack.job_ids)
    monkeypatch.undo()
    with transaction(settings) as session:
        report = write_report(session, dataset, tmp_path / "docs" / "study.md")
        standings = Standings.compute(session, dataset)
        boards = Leaderboards.load(session, dataset, standings)
        results = load_results(session, dataset)
        names = standings.names.frame["submission"]
    results = results.assign(attack=results["attack_id"].map(names), defense=results["defense_id"].map(names))
    return report, boards, results


def _section(report: str, title: str) -> str:
    return report.split(f"## {title}")[1].split("\n## ")[0]


def _errors(results, attack, defense, epsilon):
    cell = results[(results["attack"] == attack) & (results["defense"] == defense) & (results["epsilon"] == epsilon)]
    return cell.set_index("image_id")["error"].sort_index()


def test_every_file_is_written(study):
    written = study[0]
    assert all(path.is_file() and path.stat().st_size > 0 for path in written)


def test_table_1_has_defenders_as_rows_and_marks_what_each_attacker_holds(study):
    report = study[0][0].read_text()
    table1 = _section(report, "Table 1 analog")
    header = next(line for line in table1.splitlines() if line.startswith("| defender"))
    assert header.split(" | ")[1:] == [*ATTACK_ORDER[:-1], ATTACK_ORDER[-1] + " |"]
    cells = re.findall(r"(\d+\.\d) \((\d+\.\d)–(\d+\.\d)\)", table1)
    assert len(cells) == len(ATTACK_ORDER) * len(UNFILTERED)
    assert all(float(low) <= float(rate) <= float(high) for rate, low, high in cells)
    row = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in table1.splitlines() if line.startswith("| lite")}
    marked = dict(zip(ATTACK_ORDER, row["lite2"]))
    assert marked["ifgsm"].startswith("(") is False and not marked["ifgsm"].startswith("**")  # transfer: plain
    assert marked["ensemble_ifgsm"][0].isdigit()  # Lite2 held out: plain
    assert marked["all_models_ifgsm"].startswith("**")  # holds Lite2: white-box
    ensemble = next(line for line in table1.splitlines() if line.startswith("| ensemble |"))
    assert dict(zip(ATTACK_ORDER, ensemble.split(" | ")[1:]))["ensemble_ifgsm"].startswith("*")
    assert access("bpda_ifgsm", "median_ensemble") == "adaptive" and access("bpda_ifgsm", "ensemble") == "white-box"
    assert "‡" in _section(report, "Table 2 analog")


def test_the_filters_effect_is_mcnemar_on_the_stored_answers(study):
    report, _, results = study[0][0].read_text(), study[1], study[2]
    for epsilon in (2, 16):
        plain, filtered = _errors(results, "ifgsm", "lite0", epsilon), _errors(results, "ifgsm", "median_lite0", epsilon)
        b, c = int((plain & ~filtered).sum()), int((~plain & filtered).sum())
        assert b + c > 0  # the defenses disagree somewhere: the test below can fail
        expected = f"{100 * (filtered.mean() - plain.mean()):+.1f} (p {mcnemar_exact(b, c):.2g})"
        section = _section(report, f"Every rate at eps {epsilon}")
        row = next(line for line in section.splitlines() if line.startswith("| lite0 |") and "(p " in line)
        assert dict(zip(ATTACK_ORDER, row.split(" | ")[1:]))["ifgsm"] == expected


def test_the_findings_numbers_are_the_stored_rates(study):
    report, results = study[0][0].read_text(), study[2]
    findings = _section(report, "What holds here")
    held = next(part for part in findings.split("- **Source:**") if "hold-out inception_v4" in part)
    for epsilon in EPSILONS:
        plain = 100 * _errors(results, "ensemble_ifgsm", "lite2", epsilon).mean()
        filtered = 100 * _errors(results, "ensemble_ifgsm", "median_lite2", epsilon).mean()
        assert f"eps {epsilon}: {plain:.1f}% → {filtered:.1f}%" in held
    assert "80.63% and 75.63%" in held  # the source's own cells, quoted exactly
    assert held.count("**Verdict:**") == 1
    assert "did not include the defended models" not in report and "as in the study" not in report


def test_table_3_stands_beside_the_source_numbers(study):
    report, results = study[0][0].read_text(), study[2]
    table3 = _section(report, "Table 3 analog")
    row = next(line for line in table3.splitlines() if line.startswith("| 16 |"))
    plain = 100 * _errors(results, "all_models_ifgsm", "ensemble", 16).mean()
    assert row.split(" | ")[1].startswith(f"{plain:.1f} (") and row.rstrip(" |").endswith("99.4 | 43.1")


def test_the_attack_budget_comes_from_the_stored_runs(study):
    budgets = _section(study[0][0].read_text(), "Attacks and what they spent")
    row = next(line for line in budgets.splitlines() if line.startswith("| ifgsm |"))
    assert "| 40.0 | 8% of 500 s |" in row


def test_the_worst_case_agrees_with_the_leaderboards(study):
    report, boards = study[0][0].read_text(), study[1]
    worst = _section(report, "Worst case over the attacks")
    robust = boards.robust_accuracy.set_index("submission")
    for defense in DEFENDERS:
        row = next(line for line in worst.splitlines() if line.startswith(f"| {defense} |"))
        expected = " | ".join(f"{100 * robust.loc[defense, f'worst_case_eps={e}']:.1f} "
                              f"({100 * robust.loc[defense, f'worst_case_eps={e}_low']:.1f}–"
                              f"{100 * robust.loc[defense, f'worst_case_eps={e}_high']:.1f})" for e in EPSILONS)
        assert row.startswith(f"| {defense} | {expected} |"), row


def test_every_real_sample_is_described_for_the_tables():
    """A sample added to submissions/real without its models in study_tables would be shown as a
    transfer cell by mistake."""
    import json

    from arena.tools.demo import sample_folders
    from arena.tools.study import REAL_SAMPLES
    from arena.tools.study_tables import ATTACKERS

    kinds = {folder.name: json.loads((folder / "metadata.json").read_text())["type"] for folder in sample_folders(REAL_SAMPLES)}
    assert {name for name, kind in kinds.items() if kind != "defense"} == set(ATTACKERS)
    assert {name for name, kind in kinds.items() if kind == "defense"} == set(DEFENDERS)


def test_the_adaptive_verdict_compares_the_stored_rates_photo_by_photo(study):
    report, results = study[0][0].read_text(), study[2]
    findings = _section(report, "What holds here")
    adaptive = next(part for part in findings.split("- **Source:**") if "not made through the filter" in part)
    strongest = max(["bpda_ifgsm", "eot_ifgsm"], key=lambda a: _errors(results, a, "median_ensemble", 2).mean())
    filtered = _errors(results, strongest, "median_ensemble", 2)
    plain = _errors(results, "all_models_ifgsm", "ensemble", 2)
    b, c = int((plain & ~filtered).sum()), int((~plain & filtered).sum())
    assert (f"under {strongest} the filtered ensemble is fooled on {100 * filtered.mean():.1f}%, against "
            f"{100 * plain.mean():.1f}% for the unfiltered ensemble under all_models_ifgsm "
            f"(p {mcnemar_exact(b, c):.2g})") in adaptive
