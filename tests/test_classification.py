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
    answers, problems = parse_result_csv(result, ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"])
    assert answers["a.png"].label == 5 and answers["a.png"].problem is None
    assert answers["b.png"].problem is P.INVALID and answers["c.png"].problem is P.INVALID
    assert answers["d.png"].problem is P.DUPLICATE
    assert answers["e.png"].label == 9
    assert answers["f.png"].problem is P.MISSING
    assert "1 line(s) name images that were not given" in problems
    assert "1 line(s) are not IMAGE.png,LABEL" in problems


def test_a_missing_or_huge_file_is_bounded(tmp_path):
    answers, problems = parse_result_csv(tmp_path / "absent.csv", ["a.png"])
    assert answers["a.png"].problem is P.MISSING and problems == ["result.csv was not written"]
    huge = tmp_path / "huge.csv"
    huge.write_text("a.png,1\n" + "x" * 10_000_000)
    answers, problems = parse_result_csv(huge, ["a.png"])
    assert answers["a.png"].label == 1
    assert any("only the start was read" in p for p in problems)
