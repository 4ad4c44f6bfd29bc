"""Write the chatterbot-corpus category-routing data set as JSONL: each line is one English
utterance (a question or an answer) and the category of the corpus file it comes from.

The split is deterministic and by text: an utterance goes to the held-out file when the first
byte of its SHA-1 falls in the held-out share, so the held-out queries are texts the model never
sees in training, while every category is known at training time (the routing task).

Run: python prepare_data.py [--out data] [--held-out 0.3]
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
from collections import defaultdict


def corpus_dir() -> str:
    try:
        import chatterbot_corpus
    except ImportError:
        raise SystemExit("this example needs the chatterbot-corpus package: pip install 'simplug[examples]'") from None
    return os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data", "english")


def read_corpus() -> dict[str, str]:
    """utterance -> category; utterances found in more than one category are left out."""
    import yaml

    categories_of: dict[str, set[str]] = defaultdict(set)
    for path in sorted(glob.glob(os.path.join(corpus_dir(), "*.yml"))):
        category = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as fh:
            document = yaml.safe_load(fh)
        for conversation in document.get("conversations", []):
            for utterance in conversation:
                # bare punctuation and one-letter replies carry no category signal
                if isinstance(utterance, str) and sum(c.isalnum() for c in utterance) >= 2:
                    categories_of[" ".join(utterance.split())].add(category)
    return {text: next(iter(cats)) for text, cats in sorted(categories_of.items()) if len(cats) == 1}


def is_held_out(text: str, share: float) -> bool:
    return hashlib.sha1(text.encode("utf-8")).digest()[0] < round(256 * share)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "data"))
    parser.add_argument("--held-out", type=float, default=0.3)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    splits: dict[str, list[dict[str, str]]] = {"train": [], "validation": []}
    for text, category in read_corpus().items():
        splits["validation" if is_held_out(text, args.held_out) else "train"].append({"text": text, "category": category})
    for split, rows in splits.items():
        with open(os.path.join(args.out, f"{split}.jsonl"), "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        print(f"{split}: {len(rows)} utterances in {len({r['category'] for r in rows})} categories")


if __name__ == "__main__":
    main()
