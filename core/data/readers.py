"""Read pair and group samples from JSONL or CSV files, with errors that name the line and field.

Every line is checked as it is read (``file: line N: field 'x' ...: what to do``), so a bad
value never reaches training as a raw ``TypeError`` or a NaN loss:

- objects: text, a finite number, an array of finite numbers, an array of text, or an object
  (table) of those. Every object of a file has the same structure as the first one (the same
  type, arrays of numbers the same shape, objects the same keys), because the encoder batches
  them together; a ragged array is named with its line.
- ``score``: a finite number (numeric text in CSV); ``subgroup``: a whole number.
- group labels are keyed by their JSON type and value: ``"cat"``, ``1`` and ``1.0`` (one JSON
  number), ``true``. A data set's labels must all be of one type — strings, numbers or booleans
  — across all its files: ``1`` in one line and ``"1"`` or ``true`` in another is an error
  naming the line, never a silent merge (Python's ``1 == 1.0 == True``) or a silent split.
  CSV values are always text, so a CSV split next to a JSONL split with numeric labels is
  reported too.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any, Iterator, Mapping

import numpy as np
from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample
from simplug.errors import DataError

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
            header = list(reader.fieldnames or [])
            extra = row.pop(None, None) or []  # type: ignore[call-overload]  # values past the header
            missing = [k for k in header if row.get(k) is None]  # the row ended early
            if extra or missing:
                values = len(header) - len(missing) + len(extra)
                raise DataError(
                    f"{path}: line {reader.line_num} has {values} value(s) but the header names {len(header)} "
                    f"column(s) ({', '.join(header)}); quote values that hold commas, and give every row "
                    "one value per column (an empty value is allowed)"
                )
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

    Group labels may be strings, numbers or booleans (one type per data set, see the module's
    docstring); ``group_ids`` maps them (keyed by ``(type, value)``) to ints and is extended with
    new labels, so pass the same dict for every split of one data set.
    """
    names = field_names(kind, fields)
    group_ids = {} if group_ids is None else group_ids
    structure = _ObjectStructure(path)
    label_kinds: dict[str, int] = {}  # label type -> first line with it, in this file
    samples: list[Any] = []
    for number, row in iter_rows(path):
        for field in REQUIRED[kind]:
            if names[field] not in row or row[names[field]] in (None, ""):
                raise DataError(
                    f"{path}: line {number} has no field {names[field]!r} (the {field} of a "
                    f"{kind[:-1]} sample); its fields are: {', '.join(map(str, row)) or 'none'}"
                )
        if kind == "groups":
            obj = structure.check(row[names["obj"]], number, names["obj"])
            key = _label_key(row[names["group"]], path, number, names["group"])
            _check_label_kind(key, group_ids, label_kinds, path, number, names["group"])
            group = group_ids.setdefault(key, len(group_ids))
            samples.append(SimilarityGroupSample(obj=obj, group=group))
        else:
            samples.append(
                SimilarityPairSample(
                    obj_a=structure.check(row[names["obj_a"]], number, names["obj_a"]),
                    obj_b=structure.check(row[names["obj_b"]], number, names["obj_b"]),
                    score=_score(row.get(names["score"]), path, number, names["score"]),
                    subgroup=_whole(row.get(names["subgroup"]), path, number, names["subgroup"]),
                )
            )
    if not samples:
        raise DataError(f"{path} holds no samples; an empty data split cannot be trained or evaluated on")
    return samples


# ---------------------------------------------------------------------- per-line checks
def _show(value: Any) -> str:
    """A value as it appears in the file, cut short."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _score(value: Any, path: str, line: int, field: str) -> float:
    if value is None or value == "":
        return 1.0
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None:
        raise DataError(
            f"{path}: line {line}: field {field!r} must be a number (1.0 similar, 0.0 dissimilar), "
            f"got {_show(value)}"
        )
    if not math.isfinite(number):
        raise DataError(
            f"{path}: line {line}: field {field!r} is {_show(value)}, not a finite number; give the pair "
            "a real score (1.0 similar, 0.0 dissimilar) or drop the line"
        )
    return number


def _whole(value: Any, path: str, line: int, field: str) -> int:
    if value is None or value == "":
        return 0
    number: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                number = None
    if number is None or not math.isfinite(number) or number != int(number):
        raise DataError(f"{path}: line {line}: field {field!r} must be a whole number (an id), got {_show(value)}")
    return int(number)


_LABEL_TYPES = {"string": "strings", "number": "numbers", "boolean": "booleans (true/false)"}


def _label_key(label: Any, path: str, line: int, field: str) -> tuple[str, Any]:
    """``(JSON type, value)``: ``1`` and ``1.0`` are one number; ``"1"`` and ``true`` differ."""
    if isinstance(label, bool):
        return ("boolean", label)
    if isinstance(label, str):
        return ("string", label)
    if isinstance(label, (int, float)):
        if not math.isfinite(label):
            raise DataError(f"{path}: line {line}: group {field!r} is {_show(label)}; a group label must be finite")
        return ("number", int(label) if float(label).is_integer() else float(label))
    raise DataError(
        f"{path}: line {line}: group {field!r} must be a string, a number or a boolean, got "
        f"{type(label).__name__} {_show(label)}"
    )


def _check_label_kind(key: tuple[str, Any], group_ids: Mapping[Any, int], seen: dict[str, int], path: str,
                      line: int, field: str) -> None:
    """One label type per data set: mixing types is a mistake, never silently one group or two."""
    label_type = key[0]
    seen.setdefault(label_type, line)
    other_types = [t for t in seen if t != label_type]
    if other_types:
        where = f"line {seen[other_types[0]]} of this file"
        other = other_types[0]
    else:
        earlier = next((k for k in group_ids if isinstance(k, tuple) and len(k) == 2 and k[0] != label_type), None)
        if earlier is None:
            return
        where, other = "an earlier file of this data set", earlier[0]
    raise DataError(
        f"{path}: line {line}: group {field!r} is the {label_type} {_show(key[1])}, but {where} has "
        f"{_LABEL_TYPES[other]} as labels. Labels are told apart by type (1, \"1\" and true are three "
        f"different groups), so mixing them is almost always a mistake: write every label of the data set "
        f"the same way, e.g. all as strings (CSV files always hold strings)"
    )


class _ObjectStructure:
    """Every object of a file must have the structure of the first one (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.first: tuple[Any, int, str] | None = None  # (structure, line, field)

    def check(self, value: Any, line: int, field: str) -> Any:
        try:
            structure = _structure(value)
        except _BadObject as bad:
            raise DataError(f"{self.path}: line {line}: field {field!r} {bad} ({_show(value)})") from None
        if self.first is None:
            self.first = (structure, line, field)
        elif structure != self.first[0]:
            first, first_line, first_field = self.first
            raise DataError(
                f"{self.path}: line {line}: field {field!r} is {_describe(structure)}, but line {first_line}'s "
                f"{first_field!r} is {_describe(first)}. Every object of a file must have the same structure "
                "(the encoder batches them together): fix this line, or drop it"
            )
        return value


class _BadObject(Exception):
    pass


def _structure(value: Any) -> Any:
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise _BadObject("is not a finite number")
        return "number"
    if isinstance(value, dict):
        if not value:
            raise _BadObject("is an empty object")
        return ("object", tuple((str(k), _structure(v)) for k, v in sorted(value.items())))
    if isinstance(value, list):
        if not value:
            raise _BadObject("is an empty array")
        try:
            array = np.asarray(value)
        except ValueError:
            raise _BadObject("is a ragged array: its rows have different lengths") from None
        if array.dtype.kind in "iuf":
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise _BadObject("holds NaN or infinity")
            return ("numbers", array.shape)
        if array.dtype.kind == "b":
            return ("booleans", array.shape)
        if array.dtype.kind == "U" and all(isinstance(x, str) for x in np.asarray(value, dtype=object).ravel()):
            return ("texts", array.shape[1:])  # a list of tokens: its length may vary
        raise _BadObject("is an array that mixes types (numbers, text, null, objects); use one type")
    if value is None:
        raise _BadObject("is null")
    raise _BadObject(f"is a {type(value).__name__}")


def _describe(structure: Any) -> str:
    if structure in ("text", "boolean"):
        return structure
    if structure == "number":
        return "a number"
    tag, detail = structure
    if tag == "object":
        return "an object {" + ", ".join(f"{k}: {_describe(v)}" for k, v in detail) + "}"
    if tag == "texts":
        return "an array of text" + (f" rows of shape {detail}" if detail else "")
    return f"an array of {tag} of shape {tuple(detail)}"


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
