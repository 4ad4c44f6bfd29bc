"""Read pair and group samples from JSONL or CSV files, with errors that name the line and field."""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Iterator, Mapping

from simplug.errors import DataError
from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample

PAIR_FIELDS = {"obj_a": "obj_a", "obj_b": "obj_b", "score": "score", "subgroup": "subgroup"}
GROUP_FIELDS = {"obj": "obj", "group": "group"}
REQUIRED = {"pairs": ("obj_a", "obj_b"), "groups": ("obj", "group")}


def field_names(kind: str, fields: Mapping[str, str] | None) -> dict[str, str]:
    """Our field -> the file's column name, defaults overridden by ``fields``."""
    if kind not in REQUIRED:
        raise DataError(f"data kind must be 'pairs' or 'groups', got {kind!r}")
    names = dict(PAIR_FIELDS if kind == "pairs" else GROUP_FIELDS)
    for ours, theirs in (fields or {}).items():
        if ours not in names:
            raise DataError(
                f"unknown data field {ours!r} for {kind}; the fields are: {', '.join(names)} "
                "(map each to your file's column name, e.g. fields = {obj = \"text\"})"
            )
        names[ours] = theirs
    return names


def _read_text(path: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist")
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
            "save the file as UTF-8"
        ) from None


def iter_rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    text = _read_text(path)
    if path.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        for row in reader:
            yield reader.line_num, row
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg}); each line holds one JSON object") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} holds a {type(row).__name__}, not a JSON object")
        yield number, row


def read_samples(
    path: str, kind: str, fields: Mapping[str, str] | None = None, group_ids: dict[Any, int] | None = None
) -> list[SimilarityPairSample] | list[SimilarityGroupSample]:
    """Samples of ``kind`` ('pairs' or 'groups') from a .jsonl or .csv file.

    Group labels may be any value (e.g. category names); ``group_ids`` maps them to ints and
    is extended with new labels, so pass the same dict for every split of one data set.
    """
    names = field_names(kind, fields)
    group_ids = {} if group_ids is None else group_ids
    samples: list[Any] = []
    for number, row in iter_rows(path):
        for field in REQUIRED[kind]:
            if names[field] not in row or row[names[field]] in (None, ""):
                raise DataError(
                    f"{path}: line {number} has no field {names[field]!r} (the {field} of a "
                    f"{kind[:-1]} sample); its fields are: {', '.join(map(str, row)) or 'none'}"
                )
        if kind == "groups":
            label = row[names["group"]]
            if isinstance(label, (list, dict)):
                raise DataError(f"{path}: line {number}: group must be a number or a string, got {type(label).__name__}")
            group = group_ids.setdefault(label, len(group_ids))
            samples.append(SimilarityGroupSample(obj=row[names["obj"]], group=group))
        else:
            samples.append(
                SimilarityPairSample(
                    obj_a=row[names["obj_a"]],
                    obj_b=row[names["obj_b"]],
                    score=_number(row.get(names["score"]), 1.0, path, number, names["score"]),
                    subgroup=_number(row.get(names["subgroup"]), 0, path, number, names["subgroup"]),
                )
            )
    if not samples:
        raise DataError(f"{path} holds no samples; an empty data split cannot be trained or evaluated on")
    return samples


def _number(value: Any, default: float | int, path: str, line: int, field: str) -> Any:
    if value is None or value == "":
        return default
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: line {line}: field {field!r} must be a number, got {value!r}") from None


def read_objects(path: str) -> list[Any]:
    """Objects to encode: .txt (a text per line), .jsonl (a JSON value per line), .json (a list)
    or .npy (one object per row)."""
    if not os.path.isfile(path):
        raise DataError(f"input file {path!r} does not exist")
    lower = path.lower()
    if lower.endswith(".npy"):
        import numpy as np

        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{path} is not a plain numeric .npy file ({exc})") from None
        objects: list[Any] = list(array)
    elif lower.endswith(".json"):
        try:
            objects = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(objects, list):
            raise DataError(f"{path} must hold a JSON list of objects, got a {type(objects).__name__}")
    elif lower.endswith(".jsonl"):
        objects = []
        for number, line in enumerate(_read_text(path).splitlines(), start=1):
            if line.strip():
                try:
                    objects.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
    else:
        objects = [line for line in _read_text(path).splitlines() if line.strip()]
    if not objects:
        raise DataError(f"{path} holds nothing to encode")
    return objects
