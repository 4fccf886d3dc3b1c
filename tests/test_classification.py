from arena.models import ClassificationProblem as P
from arena.sandbox.result_csv import parse_result_csv


def test_each_input_gets_one_answer_whatever_the_file_holds(tmp_path):
    result = tmp_path / "result.csv"
    result.write_text(
        "a.png,5\n"
        "b.png,banana\n"  # not a number
        "c.png,1001\n"  # out of range
        "d.png,7\nd.png,8\n"  # answered twice, differently
        "e.png,9\ne.png,9\n"  # answered twice, the same
        "unknown.png,3\n"
        "just garbage\n"
    )
    parsed = parse_result_csv(result, ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"])
    answers = parsed.answers
    assert answers["a.png"].label == 5 and answers["a.png"].problem is None
    assert answers["b.png"].problem is P.INVALID and answers["c.png"].problem is P.INVALID
    assert answers["d.png"].problem is P.DUPLICATE
    assert answers["e.png"].label == 9
    assert answers["f.png"].problem is P.MISSING
    assert parsed.problems == ["2 image(s) invalid", "1 image(s) duplicate", "1 image(s) missing"]
    assert "1 line(s) name images that were not given: skipped, as in 2017" in parsed.notes
    assert any(n.startswith("1 line(s) are not IMAGE.png,LABEL") for n in parsed.notes)


def test_ids_are_read_as_the_2017_parser_read_them(tmp_path):
    """``IMAGE,label``, ``IMAGE.png,label`` and ``IMAGE.jpg,label`` are the same answer; a
    header line and empty lines are skipped, said as notes that fail no dry run."""
    result = tmp_path / "result.csv"
    result.write_text("ImageId,PredictedLabel\n\na,5\nb.png,6,0.93\nc.jpg,7\nd.PNG,8\ne.png\t9\n")  # b: an extra column
    parsed = parse_result_csv(result, ["a.png", "b.png", "c.png", "d.png", "e.png"])
    labels = {name: answer.label for name, answer in parsed.answers.items()}
    assert labels == {"a.png": 5, "b.png": 6, "c.png": 7, "d.png": None, "e.png": None}
    assert parsed.problems == ["2 image(s) missing"]  # .PNG was not stripped in 2017 either; a tab is no comma
    assert parsed.notes == ["1 line(s) are not IMAGE.png,LABEL: skipped, as in 2017 (a header, an empty line)",
                            "2 line(s) name images that were not given: skipped, as in 2017"]


def test_a_missing_or_huge_file_is_bounded(tmp_path):
    parsed = parse_result_csv(tmp_path / "absent.csv", ["a.png"])
    assert parsed.answers["a.png"].problem is P.MISSING and parsed.problems == ["result.csv was not written"]
    huge = tmp_path / "huge.csv"
    huge.write_text("a.png,1\n" + "x" * 10_000_000)
    parsed = parse_result_csv(huge, ["a.png"])
    assert parsed.answers["a.png"].label == 1
    assert any("only the start was read" in p for p in parsed.problems)
