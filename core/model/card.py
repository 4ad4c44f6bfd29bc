"""The model card: ``README.md`` in a saved model's directory, written by ``SimilarityModel.save``.

It says what a reader needs before using the model: its components and their versions, what it
was trained on and how it scored on held-out data before and after training, how to compare
its embeddings, and the commands to load, serve and search with it. Everything comes from the
manifest being written; values are escaped for Markdown (a manifest's strings are data, never
markup). Imports no torch.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping

MODEL_CARD = "README.md"
_CELL_SPECIALS = re.compile(r"([\\`*\[\]<>|])")


def _cell(value: Any, limit: int = 80) -> str:
    """One Markdown table cell: one line, specials escaped, long values cut."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return _CELL_SPECIALS.sub(r"\\\1", text) or "-"


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _shell_word(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_./:=@%+-]+", text) else "'" + text.replace("'", "'\\''") + "'"


def render_model_card(manifest: Mapping[str, Any], directory_name: str = "model") -> str:
    similarity = manifest.get("similarity") or {}
    training = manifest.get("training") or {}
    distance = str(similarity.get("distance", "cosine"))
    model = _shell_word(directory_name)
    lines = [
        f"# {_cell(directory_name)}: a simplug similarity model",
        "",
        f"Embeddings of size {_cell(manifest.get('embedding_size'))}, saved by simplug "
        f"{_cell(manifest.get('simplug_version'))} (torch {_cell(manifest.get('torch_version'))}).",
        "",
        "## Similarity",
        "",
        f"Compare embeddings with the **{_cell(distance)}** distance"
        + (" (the distance of the training loss)." if (training.get("loss") or {}).get("config", {}).get("distance_metric_name") else ".")
        + (" The embeddings leave the model with unit length." if similarity.get("normalized") else ""),
        "An index built with `simplug index` uses the same distance.",
    ]
    sides = manifest.get("sides") or []
    if sides:
        lines += ["", "This model has a head per side: encode queries with `side=\"query\"` and documents "
                      "with `side=\"document\"`."]
    lines += ["", "## Components", ""]
    rows = []
    for component in manifest.get("components", []):
        source = "local code" if component.get("source") == "local" else component.get("distribution", "")
        rows.append([component.get("role", ""), component.get("kind", ""), component.get("name", component.get("class", "")),
                     source, component.get("version", ""), json.dumps(component.get("config", {}), sort_keys=True)])
    lines += _table(["role", "kind", "name", "distribution", "version", "config"], rows)

    loss = training.get("loss") or {}
    data = training.get("data") or {}
    held_out = training.get("held_out") or {}
    if loss or data or held_out:
        lines += ["", "## Training", ""]
        if loss:
            lines.append(f"- loss: {_cell(loss.get('name'))} {_cell(json.dumps(loss.get('config', {}), sort_keys=True), 200)}")
        if training.get("metrics"):
            lines.append(f"- metrics logged: {_cell(', '.join(map(str, training['metrics'])), 200)}")
        if data:
            lines.append("- data: " + ", ".join(f"{_cell(k)} {_cell(v, 120)}" for k, v in data.items()))
    if held_out.get("before") or held_out.get("after"):
        before, after = held_out.get("before") or {}, held_out.get("after") or {}
        names = list(dict.fromkeys([*before, *after]))
        lines += ["", "## Held-out metrics", ""]
        if held_out.get("protocol"):
            lines += [f"{_cell(held_out['protocol'], 300)}.", ""]

        def number(row: Mapping[str, Any], name: str) -> str:
            value = row.get(name)
            return f"{value:.3f}" if isinstance(value, (int, float)) else "-"

        lines += _table(["metric", "before training", "after training"],
                        [[name, number(before, name), number(after, name)] for name in names])
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from simplug.serving import SimilarityModel",
        "",
        f"model = SimilarityModel.load({json.dumps(directory_name)})",
        "vectors = model.encode([...])" + ("  # side=\"query\" or \"document\"" if sides else ""),
        "scores = model.similarity(queries, documents)",
        "```",
        "",
        "```sh",
        f"simplug info {model}",
        f"simplug serve {model}                       # POST /encode, /search; GET /health, /info",
        f"simplug index {model} items.jsonl --index ./index --id-field id",
        f"simplug search {model} ./index \"a question\" -k 5",
        f"simplug serve {model} --index ./index       # adds POST /search",
        "```",
        "",
    ]
    return "\n".join(lines)
