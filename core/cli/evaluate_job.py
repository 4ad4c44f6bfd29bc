"""``simplug evaluate MODEL DATA``: retrieval metrics of a saved model on a data file.

Unless told otherwise, the data is read as the model was trained on: ``simplug train`` records
the data kind, the field names and the evaluation distance in the saved model's manifest
(``training.data`` and ``training.evaluate``). The metrics are registered metric plugins,
scored by the ranking engine under the same names as ``simplug train``'s table.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from simplug.data.readers import iter_rows, read_samples
from simplug.errors import ConfigError, DataError
from simplug.evaluation.heldout import HeldOutScorer, retrieval_task
from simplug.evaluation.retrieval import DEFAULT_KS, default_metric_specs
from simplug.model.similarity_model import SimilarityModel
from simplug.serving.search import evaluate_through_index, open_index

#: the fields of each data kind when the job names none
DEFAULT_FIELDS = {"groups": ("obj", "group"), "pairs": ("obj_a", "obj_b")}


def parse_metric(text: str) -> dict[str, Any]:
    """``"recall:k=5"`` or ``"map@r"`` -> ``{"name": "recall", "k": 5}``; values are read as
    JSON (numbers, true/false, null) or else kept as text."""
    name, _, args = text.partition(":")
    spec: dict[str, Any] = {"name": name.strip()}
    if not spec["name"]:
        raise ConfigError(f"--metric takes NAME or NAME:arg=value,arg=value (e.g. recall:k=5), got {text!r}")
    for item in filter(str.strip, args.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--metric {text!r}: arguments are arg=value pairs separated by commas (e.g. recall:k=5)")
        try:
            spec[key.strip()] = json.loads(value)
        except ValueError:
            spec[key.strip()] = value.strip()
    return spec


def trained_with(model: SimilarityModel) -> dict[str, Any]:
    """What ``simplug train`` recorded about the model's data: ``{"data": {"kind", "fields"},
    "evaluate": {"distance"}}`` (empty for models saved otherwise)."""
    training = getattr(model, "manifest", {}).get("training") or {}
    return {"data": dict(training.get("data") or {}), "evaluate": dict(training.get("evaluate") or {})}


def run_evaluation(model_path: str, data_path: str, kind: str | None = None, fields: Mapping[str, str] | None = None,
                   candidates_path: str | None = None, distance: str | None = None,
                   metrics: Sequence[Any] | None = None, ks: Sequence[int] = DEFAULT_KS,
                   batch_size: int = 64, trust_local_code: bool = False, index: str | None = None,
                   collection: str = "simplug-evaluate") -> dict[str, Any]:
    """Metrics of a saved model on a data file: ``{"metrics": {...}, "protocol": ..., "kind": ...,
    "fields": ..., "distance": ...}``.

    Groups: each item against the other items of the file (leaving itself out), or against
    ``candidates_path``'s items. Pairs: each distinct obj_a against every distinct obj_b (plus
    those of ``candidates_path``). ``kind``, ``fields`` and ``distance`` default to what the
    model was trained with, then to the defaults. With ``index`` (a folder or a Qdrant URL) the
    candidates are indexed into ``collection`` and ranked by the index, under the model's own
    distance; ``recall_vs_exact@k`` says how much of the exact top-k the index found."""
    model = SimilarityModel.load(model_path, trust_local_code=trust_local_code)
    recorded = trained_with(model)
    trained_kind = recorded["data"].get("kind")
    kind = kind or _kind_from_fields(fields) or trained_kind or _guess_kind(data_path)
    if kind not in DEFAULT_FIELDS:
        raise ConfigError(f"--kind must be pairs or groups, got {kind!r}")
    if not fields and kind == trained_kind:
        fields = _recorded_fields(data_path, recorded["data"].get("fields"))
    distance = distance or recorded["evaluate"].get("distance") or "cosine"
    group_ids: dict[Any, int] = {}
    samples = read_samples(data_path, kind, fields, group_ids)
    known = read_samples(candidates_path, kind, fields, group_ids) if candidates_path else []
    if kind == "groups":
        task = retrieval_task(kind, samples, known, "train" if candidates_path else "self")
    else:
        task = retrieval_task(kind, samples, known)
    specs = metrics if metrics else default_metric_specs(kind, ks)
    if index is not None:
        with open_index(index, collection=collection) as opened:
            scores = evaluate_through_index(model, task, opened, ks=ks, batch_size=batch_size, metrics=specs)
        distance = model.distance
    else:
        scores = HeldOutScorer(task, distance, batch_size=batch_size, metrics=specs).score(model)
    return {"metrics": scores, "protocol": task.description, "kind": kind,
            "fields": dict(fields or {}), "distance": distance}


def _kind_from_fields(fields: Mapping[str, str] | None) -> str | None:
    if not fields:
        return None
    return "pairs" if {"obj_a", "obj_b", "score"} & set(fields) else "groups"


def _first_row(path: str) -> Mapping[str, Any]:
    for _, row in iter_rows(path):
        return row
    raise DataError(f"{path} holds no rows")


def _recorded_fields(path: str, recorded: Mapping[str, str] | None) -> dict[str, str] | None:
    """The field names the model was trained with, if this file has those columns (else the
    defaults: a file written with the standard names reads as it is)."""
    if not recorded:
        return None
    row = _first_row(path)
    return dict(recorded) if all(column in row for column in recorded.values()) else None


def _guess_kind(path: str) -> str:
    row = _first_row(path)
    if "obj_a" in row or "obj_b" in row:
        return "pairs"
    if "obj" in row or "group" in row:
        return "groups"
    raise DataError(f"cannot tell whether {path} holds pairs or groups from its fields; pass --kind pairs or --kind groups")
