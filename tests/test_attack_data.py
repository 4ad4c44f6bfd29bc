"""Hostile data: every bad line is an error naming the file, the line, the field and the fix;
group labels are never merged or split silently; samples check their numbers when made."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simplug.data.loaders import GroupSimilarityDataLoader, PairsSimilarityDataLoader
from simplug.data.readers import read_samples
from simplug.data.samples import SimilarityGroupDataset, SimilarityGroupSample, SimilarityPairSample
from simplug.errors import DataError


def write_jsonl(path, rows) -> str:
    """Rows as JSON lines; a str row is written as it is (for NaN and other non-JSON text)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_text(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ group labels
@pytest.mark.parametrize(
    "first, second, first_type, second_type",
    [
        (1, "1", "numbers", "string"),
        (1, True, "numbers", "boolean"),
        ("1", True, "strings", "boolean"),
        (1.0, "x", "numbers", "string"),
        (True, 1, "booleans", "number"),
    ],
)
def test_labels_of_different_json_types_in_one_file_are_an_error_naming_the_line(tmp_path, first, second,
                                                                                  first_type, second_type):
    path = write_jsonl(tmp_path / "g.jsonl", [{"obj": "a", "group": first}, {"obj": "b", "group": first},
                                              {"obj": "c", "group": second}])
    with pytest.raises(DataError) as err:
        read_samples(path, "groups")
    message = str(err.value)
    assert f"{path}: line 3: group 'group' is the {second_type} {json.dumps(second)}" in message
    assert f"line 1 of this file has {first_type}" in message
    assert "write every label of the data set the same way" in message


def test_one_and_one_point_zero_are_one_json_number_and_one_group(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"obj": "a", "group": 1}, {"obj": "b", "group": 1.0},
                                              {"obj": "c", "group": 2}, {"obj": "d", "group": 1.5}])
    assert [s.group for s in read_samples(path, "groups")] == [0, 0, 1, 2]


def test_true_and_false_labels_are_two_groups(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"obj": "a", "group": True}, {"obj": "b", "group": False},
                                              {"obj": "c", "group": True}])
    assert [s.group for s in read_samples(path, "groups")] == [0, 1, 0]


def test_numeric_labels_in_jsonl_and_text_labels_in_csv_are_reported_across_files(tmp_path):
    ids: dict = {}
    read_samples(write_jsonl(tmp_path / "t.jsonl", [{"obj": "a", "group": 1}, {"obj": "b", "group": 2}]), "groups",
                 group_ids=ids)
    held = write_text(tmp_path / "v.csv", "obj,group\nc,1\n")
    with pytest.raises(DataError, match=r"v\.csv: line 2: group 'group' is the string \"1\", but an earlier file of "
                                        r"this data set has numbers"):
        read_samples(held, "groups", group_ids=ids)


@pytest.mark.parametrize("label, problem", [([1], "must be a string, a number or a boolean"),
                                            ({"a": 1}, "must be a string, a number or a boolean"),
                                            ("NaN", "a group label must be finite")])
def test_unusable_labels_name_the_line(tmp_path, label, problem):
    row = '{"obj": "b", "group": NaN}' if label == "NaN" else {"obj": "b", "group": label}
    path = write_jsonl(tmp_path / "g.jsonl", [{"obj": "a", "group": 1}, row])
    with pytest.raises(DataError, match=f"line 2: group 'group' .*{problem}"):
        read_samples(path, "groups")


# ------------------------------------------------------------------ objects
@pytest.mark.parametrize(
    "rows, expected",
    [
        ([{"obj": [1, 2, 3], "group": 1}, {"obj": [[1, 2], [3]], "group": 1}],
         r"line 2: field 'obj' is a ragged array: its rows have different lengths"),
        ([{"obj": [1, 2, 3], "group": 1}, {"obj": [1, 2], "group": 1}],
         r"line 2: field 'obj' is an array of numbers of shape \(2,\), but line 1's 'obj' is an array of numbers of "
         r"shape \(3,\)"),
        ([{"obj": "text", "group": 1}, {"obj": [1, 2], "group": 1}],
         r"line 2: field 'obj' is an array of numbers of shape \(2,\), but line 1's 'obj' is text"),
        ([{"obj": [1, 2], "group": 1}, '{"obj": [1, NaN], "group": 1}'],
         r"line 2: field 'obj' holds NaN or infinity"),
        ([{"obj": [1, "a"], "group": 1}], r"line 1: field 'obj' is an array that mixes types"),
        ([{"obj": [1, None], "group": 1}], r"line 1: field 'obj' is an array that mixes types"),
        ([{"obj": [], "group": 1}], r"line 1: field 'obj' is an empty array"),
        ([{"obj": {"a": "x", "b": [1, 2]}, "group": 1}, {"obj": {"a": "y"}, "group": 1}],
         r"line 2: field 'obj' is an object \{a: text\}, but line 1's 'obj' is an object \{a: text, b: an array"),
        (['{"obj": Infinity, "group": 1}'], r"line 1: field 'obj' is not a finite number"),
    ],
)
def test_objects_of_the_wrong_structure_name_line_and_field(tmp_path, rows, expected):
    path = write_jsonl(tmp_path / "g.jsonl", rows)
    with pytest.raises(DataError, match=expected):
        read_samples(path, "groups")


def test_objects_that_share_a_structure_are_read_unchanged(tmp_path):
    rows = [{"obj": {"text": "a b", "tokens": ["a", "b"], "x": [0.5, 1]}, "group": "g"},
            {"obj": {"text": "c", "tokens": ["c"], "x": [2, 3.5]}, "group": "h"}]
    samples = read_samples(write_jsonl(tmp_path / "g.jsonl", rows), "groups")
    assert [s.obj for s in samples] == [r["obj"] for r in rows]  # token lists may differ in length


def test_pair_sides_must_share_a_structure(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"obj_a": "q", "obj_b": [1, 2]}])
    with pytest.raises(DataError, match=r"line 1: field 'obj_b' is an array of numbers .* but line 1's 'obj_a' is text"):
        read_samples(path, "pairs")


# ------------------------------------------------------------------ scores and subgroups
@pytest.mark.parametrize(
    "score, expected",
    [
        ("NaN", r"line 1: field 'score' is NaN, not a finite number"),
        ("Infinity", r"line 1: field 'score' is Infinity, not a finite number"),
        ('"high"', r"line 1: field 'score' must be a number \(1.0 similar, 0.0 dissimilar\), got \"high\""),
        ("true", r"line 1: field 'score' must be a number"),
        ("[1]", r"line 1: field 'score' must be a number"),
    ],
)
def test_bad_scores_name_line_field_and_value(tmp_path, score, expected):
    path = write_jsonl(tmp_path / "p.jsonl", [f'{{"obj_a": "q", "obj_b": "a", "score": {score}}}'])
    with pytest.raises(DataError, match=expected):
        read_samples(path, "pairs")


def test_csv_scores_and_subgroups_are_parsed_and_checked(tmp_path):
    good = write_text(tmp_path / "good.csv", "obj_a,obj_b,score,subgroup\nq,a,0.25,3\nr,b,,2.0\n")
    assert read_samples(good, "pairs") == [SimilarityPairSample("q", "a", 0.25, 3), SimilarityPairSample("r", "b", 1.0, 2)]
    nan = write_text(tmp_path / "nan.csv", "obj_a,obj_b,score\nq,a,0.5\nr,b,nan\n")
    with pytest.raises(DataError, match=r"nan\.csv: line 3: field 'score' is \"nan\", not a finite number"):
        read_samples(nan, "pairs")


@pytest.mark.parametrize("subgroup", ["1.5", '"a"', "true", "NaN"])
def test_subgroups_must_be_whole_numbers(tmp_path, subgroup):
    path = write_jsonl(tmp_path / "p.jsonl", [f'{{"obj_a": "q", "obj_b": "a", "subgroup": {subgroup}}}'])
    with pytest.raises(DataError, match=r"line 1: field 'subgroup' must be a whole number"):
        read_samples(path, "pairs")


@pytest.mark.parametrize("text, expected", [
    ("obj,group\na,1\nb,1,extra\n", r"line 3 has 3 value\(s\) but the header names 2 column\(s\) \(obj, group\)"),
    ("obj_a,obj_b,score\nq,a,1\nr\n", r"line 3 has 1 value\(s\) but the header names 3 column\(s\)"),
])
def test_ragged_csv_rows_are_an_error(tmp_path, text, expected):
    path = write_text(tmp_path / "d.csv", text)
    kind = "pairs" if "obj_a" in text else "groups"
    with pytest.raises(DataError, match=expected):
        read_samples(path, kind)


# ------------------------------------------------------------------ samples made in Python
@pytest.mark.parametrize("group", ["cat", "1", 1.5, True, None, [1], float("nan")])
def test_group_samples_refuse_what_is_not_a_whole_number(group):
    with pytest.raises(DataError, match="SimilarityGroupSample group must be") as err:
        SimilarityGroupSample(obj=[0.0], group=group)
    if group == "cat":
        assert "SimilarityGroupDataset" in str(err.value)


@pytest.mark.parametrize("group", [3, np.int64(3), torch.tensor(3), 3.0, np.float32(3.0)])
def test_group_samples_accept_integer_like_ids_as_ints(group):
    sample = SimilarityGroupSample(obj=[0.0], group=group)
    assert sample.group == 3 and type(sample.group) is int


@pytest.mark.parametrize("kwargs, expected", [
    (dict(score=float("nan")), "score must be a finite number"),
    (dict(score="high"), "score must be a number"),
    (dict(score=None), "score must be a number"),
    (dict(subgroup="a"), "subgroup must be an int"),
    (dict(subgroup=0.5), "subgroup must be a whole number"),
])
def test_pair_samples_refuse_bad_scores_and_subgroups(kwargs, expected):
    with pytest.raises(DataError, match=expected):
        SimilarityPairSample("q", "a", **kwargs)


def test_string_labels_train_through_the_group_dataset():
    data = SimilarityGroupDataset([([float(i), 0.0], "cat" if i % 2 else "dog") for i in range(8)])
    records, targets = next(iter(GroupSimilarityDataLoader(data, batch_size=8)))
    assert targets["groups"].tolist() == [data.label_to_group["cat" if i % 2 else "dog"] for i in range(8)]
    assert records[1] == [1.0, 0.0]


@pytest.mark.parametrize("loader, data", [
    (PairsSimilarityDataLoader, [SimilarityPairSample("q", "a")]),
    (GroupSimilarityDataLoader, [SimilarityGroupSample("q", 0)]),
])
@pytest.mark.parametrize("batch_size", [0, -2, 2.5, True])
def test_loaders_refuse_a_batch_size_that_is_not_a_positive_int(loader, data, batch_size):
    with pytest.raises(DataError, match=f"{loader.__name__} batch_size must be a positive int, got {batch_size!r}"):
        loader(data, batch_size=batch_size)
