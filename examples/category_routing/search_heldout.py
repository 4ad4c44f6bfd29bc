"""After `simplug train`: index the training items and answer a few held-out questions with their
top hits, through the same calls as `simplug index` and `simplug search`.

    python examples/category_routing/search_heldout.py [--run examples/category_routing/runs/routing]

The index is embedded Qdrant in RUN/index (created on the first run; a rerun upserts the same
ids, so it never grows). Each of --questions held-out texts (one per category, in a fixed order)
is answered by its --k nearest training items; the routed category is the majority of those
hits, printed beside the true one.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import Counter

from simplug.serving import SimilarityModel
from simplug.serving.search import index_records, open_index, search

HERE = os.path.dirname(os.path.abspath(__file__))


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default=os.path.join(HERE, "runs", "routing"))
    parser.add_argument("--data", default=os.path.join(HERE, "data"))
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("-k", type=int, default=3)
    args = parser.parse_args()

    model = SimilarityModel.load(os.path.join(args.run, "model"))
    train = read_jsonl(os.path.join(args.data, "train.jsonl"))
    held_out = read_jsonl(os.path.join(args.data, "validation.jsonl"))
    with open_index(os.path.join(args.run, "index"), collection="train") as index:
        report = index_records(model, index, train, object_field="text", payload_fields=("text", "category"),
                               show_progress=True)
        print(report.summary())
        picked, seen = [], set()
        for row in held_out:  # the first held-out text of each category, in file order
            if row["category"] not in seen:
                seen.add(row["category"])
                picked.append(row)
            if len(picked) == args.questions:
                break
        results = search(model, index, [row["text"] for row in picked], k=args.k)
    correct = 0
    for row, hits in zip(picked, results):
        routed = Counter(hit.payload["category"] for hit in hits).most_common(1)[0][0]
        correct += routed == row["category"]
        print(f"\nQ: {row['text']}\n   true category: {row['category']}; routed to: {routed}")
        for rank, hit in enumerate(hits, start=1):
            print(f"   {rank}. {hit.score:.3f} [{hit.payload['category']}] {hit.payload['text'][:80]}")
    print(f"\n{correct} of {len(picked)} questions routed to their category by their top {args.k} hits")


if __name__ == "__main__":
    main()
