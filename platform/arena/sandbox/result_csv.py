"""Reading a defense's ``result.csv`` into one answer per input image.

The file is untrusted: it may be huge, binary, name images that were never given, or
answer one image twice. Each input image gets exactly one answer; anything that is not
a clean ``IMAGE.png,LABEL`` line for it becomes a counted misclassification.

As in the 2017 parser (``eval_lib/classification_results.py``,
``read_classification_results``), an id may carry ``.png``, ``.jpg`` or no extension, and
lines that do not parse (a header, an empty line) or name no given image are skipped:
they are reported as notes, which do not fail a dry run.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from arena.models import ClassificationProblem

#: Generous for 100 images (an honest line is under 40 bytes); beyond this nothing is read.
BYTES_PER_IMAGE = 1024


@dataclass(frozen=True)
class Answer:
    label: int | None
    problem: ClassificationProblem | None = None


def _parse_line(line: str) -> tuple[str, int | None] | None:
    """(id, label or None) from ``IMAGE.png,LABEL``; columns after the second are ignored, as
    2017's ``csv.reader`` rows were read by ``row[0]`` and ``row[1]`` only."""
    parts = line.strip().split(",")
    if len(parts) < 2:
        return None
    name, raw_label = parts[0].strip(), parts[1].strip()
    try:
        label = int(raw_label)
    except ValueError:
        return name, None
    return name, label if 1 <= label <= 1000 else None


def _stem(name: str) -> str:
    """The id without the extension the 2017 parser stripped (``.png`` or ``.jpg``, as written)."""
    return name[:-4] if name.endswith((".png", ".jpg")) else name


@dataclass
class ParsedResults:
    answers: dict[str, Answer]  # by input file name
    problems: list[str] = field(default_factory=list)  # any of these fails a dry run
    notes: list[str] = field(default_factory=list)  # skipped as 2017 skipped them


def parse_result_csv(path: Path, names: list[str]) -> ParsedResults:
    """One answer for each of ``names``, with what is worth telling the team."""
    if path.is_symlink() or not path.is_file():
        return ParsedResults({n: Answer(None, ClassificationProblem.MISSING) for n in names}, ["result.csv was not written"])
    problems: list[str] = []
    limit = BYTES_PER_IMAGE * max(len(names), 1) + 4096
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        problems.append(f"result.csv is larger than {limit} bytes: only the start was read")
        data = data[:limit]
    labels: dict[str, set[int | None]] = {}
    expected = {_stem(name): name for name in names}
    unparsable = unknown = 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        parsed = _parse_line(line)
        if parsed is None:
            unparsable += 1
            continue
        name, label = parsed
        if _stem(name) not in expected:
            unknown += 1
            continue
        labels.setdefault(expected[_stem(name)], set()).add(label)
    answers = {name: _answer(labels.get(name)) for name in names}
    counts = Counter(a.problem for a in answers.values() if a.problem)
    problems += [f"{count} image(s) {problem.value}" for problem, count in counts.items()]
    notes = []
    if unparsable:
        notes.append(f"{unparsable} line(s) are not IMAGE.png,LABEL: skipped, as in 2017 (a header, an empty line)")
    if unknown:
        notes.append(f"{unknown} line(s) name images that were not given: skipped, as in 2017")
    return ParsedResults(answers, problems, notes)


def _answer(labels: set[int | None] | None) -> Answer:
    if not labels:
        return Answer(None, ClassificationProblem.MISSING)
    if len(labels) > 1:
        return Answer(None, ClassificationProblem.DUPLICATE)
    (label,) = labels
    return Answer(label) if label is not None else Answer(None, ClassificationProblem.INVALID)
