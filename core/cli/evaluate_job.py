"""``simplug evaluate MODEL DATA``: retrieval metrics of a saved model on a data file."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from simplug.data.readers import iter_rows, read_samples
from simplug.errors import DataError
from simplug.evaluation.heldout import HeldOutScorer, retrieval_task
from simplug.model.similarity_model import SimilarityModel


def run_evaluation(model_path: str, data_path: str, kind: str | None = None, fields: Mapping[str, str] | None = None,
                   candidates_path: str | None = None, distance: str = "cosine", ks: Sequence[int] = (1, 5, 10),
                   batch_size: int = 64, trust_local_code: bool = False) -> dict[str, float]:
    """Metrics of a saved model on a data file (groups: each item against the others, or against
    ``candidates_path``'s items; pairs: each obj_a against every obj_b)."""
    model = SimilarityModel.load(model_path, trust_local_code=trust_local_code)
    kind = kind or _guess_kind(data_path)
    group_ids: dict[Any, int] = {}
    samples = read_samples(data_path, kind, fields, group_ids)
    if kind == "groups":
        if candidates_path:
            known = read_samples(candidates_path, kind, fields, group_ids)
            task = retrieval_task(kind, samples, known, "train")
        else:
            task = retrieval_task(kind, samples, samples, "self")
    else:
        extra = read_samples(candidates_path, kind, fields) if candidates_path else []
        task = retrieval_task(kind, samples, extra)
    return HeldOutScorer(task, distance, ks, batch_size).score(model)


def _guess_kind(path: str) -> str:
    for _, row in iter_rows(path):
        if "obj_a" in row or "obj_b" in row:
            return "pairs"
        if "obj" in row or "group" in row:
            return "groups"
        break
    raise DataError(f"cannot tell whether {path} holds pairs or groups from its fields; pass --kind pairs or --kind groups")
