"""Build the category-routing data set from the installed chatterbot-corpus package.

Every distinct English text (questions and answers alike) becomes one item labelled with
the corpus file it comes from (21 categories). Texts that occur in more than one category
are dropped: their label is ambiguous. The split is per category and deterministic: a
seeded shuffle of each category's items (sorted first, so the order of the YAML files does
not matter), the first ``--holdout`` share held out for validation.

    python examples/category_routing/prepare_data.py --out examples/category_routing/data
"""
from __future__ import annotations

import argparse
import json
import os
import random
from collections import defaultdict


def corpus_dir() -> str:
    import chatterbot_corpus

    return os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data", "english")


def load_items(directory: str) -> dict[str, str]:
    """text -> category, without texts found in several categories."""
    import yaml

    seen: dict[str, set[str]] = defaultdict(set)
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".yml"):
            continue
        category = name[: -len(".yml")]
        with open(os.path.join(directory, name), encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
        for conversation in doc.get("conversations") or []:
            for text in conversation:
                if isinstance(text, str) and text.strip():
                    seen[" ".join(text.split())].add(category)
    return {text: next(iter(cats)) for text, cats in seen.items() if len(cats) == 1}


def split(items: dict[str, str], holdout: float, seed: int) -> tuple[list[dict], list[dict]]:
    by_category: dict[str, list[str]] = defaultdict(list)
    for text, category in items.items():
        by_category[category].append(text)
    rng = random.Random(seed)
    train, validation = [], []
    for category in sorted(by_category):
        texts = sorted(by_category[category])
        rng.shuffle(texts)
        n_held = max(1, round(len(texts) * holdout))
        validation += [{"text": t, "category": category} for t in texts[:n_held]]
        train += [{"text": t, "category": category} for t in texts[n_held:]]
    return train, validation


def write_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "data"))
    parser.add_argument("--holdout", type=float, default=0.2, help="share of each category held out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    train, validation = split(load_items(corpus_dir()), args.holdout, args.seed)
    write_jsonl(os.path.join(args.out, "train.jsonl"), train)
    write_jsonl(os.path.join(args.out, "validation.jsonl"), validation)
    categories = len({r["category"] for r in train})
    print(f"{len(train)} training and {len(validation)} held-out items in {categories} categories -> {args.out}")


if __name__ == "__main__":
    main()
