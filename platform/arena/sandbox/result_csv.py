"""Reading a defense's ``result.csv`` into one answer per input image.

The file is untrusted: it may be huge, binary, name images that were never given, or
answer one image twice. Each input image gets exactly one answer; anything that is not
a clean ``IMAGE.png,LABEL`` line for it becomes a counted misclassification.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from arena.models import ClassificationProblem

#: Generous for 100 images (an honest line is under 40 bytes); beyond this nothing is read.
BYTES_PER_IMAGE = 1024


@dataclass(frozen=True)
class Answer:
    label: int | None
    problem: ClassificationProblem | None = None


def _parse_line(line: str) -> tuple[str, int | None] | None:
    parts = line.strip().split(",")
    if len(parts) != 2:
        return None
    name, raw_label = parts[0].strip(), parts[1].strip()
    try:
        label = int(raw_label)
    except ValueError:
        return name, None
    return name, label if 1 <= label <= 1000 else None


def parse_result_csv(path: Path, names: list[str]) -> tuple[dict[str, Answer], list[str]]:
    """Answers for ``names`` and a list of problems worth telling the team."""
    problems: list[str] = []
    if path.is_symlink() or not path.is_file():
        return {n: Answer(None, ClassificationProblem.MISSING) for n in names}, ["result.csv was not written"]
    limit = BYTES_PER_IMAGE * max(len(names), 1) + 4096
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        problems.append(f"result.csv is larger than {limit} bytes: only the start was read")
        data = data[:limit]
    labels: dict[str, set[int | None]] = {}
    expected = set(names)
    unparsable = unknown = 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        parsed = _parse_line(line)
        if parsed is None:
            unparsable += 1
            continue
        name, label = parsed
        if name not in expected:
            unknown += 1
            continue
        labels.setdefault(name, set()).add(label)
    answers = {name: _answer(labels.get(name)) for name in names}
    counts = Counter(a.problem for a in answers.values() if a.problem)
    problems += [f"{count} image(s) {problem.value}" for problem, count in counts.items()]
    if unparsable:
        problems.append(f"{unparsable} line(s) are not IMAGE.png,LABEL")
    if unknown:
        problems.append(f"{unknown} line(s) name images that were not given")
    return answers, problems


def _answer(labels: set[int | None] | None) -> Answer:
    if not labels:
        return Answer(None, ClassificationProblem.MISSING)
    if len(labels) > 1:
        return Answer(None, ClassificationProblem.DUPLICATE)
    (label,) = labels
    return Answer(label) if label is not None else Answer(None, ClassificationProblem.INVALID)
