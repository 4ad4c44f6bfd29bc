"""Build the held-out-synonym data set from WordNet 3.0.

Selection: synsets of one part of speech (nouns by default) with at least three distinct
lemmas and at least one sense seen in the sense-tagged corpus (``cntlist.rev`` count > 0),
which keeps common words. Split: in each synset one lemma is held out, by default the first
in WordNet's order (the synset's most frequent word, what a user would most likely type;
``--held-out random`` picks one with a seeded generator instead); the other lemmas are
training pairs ``(word, definition)``. At evaluation a held-out word must find its synset's
definition among the definitions of all selected synsets: the definitions are known at
training time, the query words are new.

Source: Debian's ``wordnet-base`` (``apt-get install wordnet-base``) when it is installed;
otherwise the compact extract committed beside this script (``synsets_<pos>.jsonl``,
WordNet 3.0, licence in ``WORDNET_LICENSE``), which ``--extract`` regenerates.

    python examples/wordnet_synonyms/prepare_data.py --out examples/wordnet_synonyms/data
"""
from __future__ import annotations

import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
WORDNET_DIR = "/usr/share/wordnet"
POS_FILES = {"noun": ("data.noun", "1"), "verb": ("data.verb", "2")}


def _tagged_senses(wordnet_dir: str) -> set[str]:
    """``lemma%pos:lexfile:lexid`` of every sense with a non-zero tagged count."""
    tagged = set()
    with open(os.path.join(wordnet_dir, "cntlist.rev"), encoding="latin-1") as fh:
        for line in fh:
            key, _sense_number, count = line.split()
            if int(count) > 0:
                lemma, _, rest = key.partition("%")
                pos, lexfile, lexid = rest.split(":")[:3]
                tagged.add(f"{lemma.lower()}%{pos}:{lexfile}:{lexid}")
    return tagged


def read_wordnet(pos: str, wordnet_dir: str = WORDNET_DIR, min_lemmas: int = 3) -> list[dict]:
    """Selected synsets as ``{"id", "lemmas", "definition"}``, in file order."""
    filename, pos_digit = POS_FILES[pos]
    tagged = _tagged_senses(wordnet_dir)
    synsets = []
    with open(os.path.join(wordnet_dir, filename), encoding="latin-1") as fh:
        for line in fh:
            if line.startswith("  "):  # licence header
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            offset, lexfile, n_words = fields[0], fields[1], int(fields[3], 16)
            words = [(fields[4 + 2 * i], int(fields[5 + 2 * i], 16)) for i in range(n_words)]
            seen_in_corpus = any(f"{w.lower()}%{pos_digit}:{lexfile}:{lexid:02d}" in tagged for w, lexid in words)
            lemmas = list(dict.fromkeys(_clean_lemma(w) for w, _ in words))  # WordNet's order, no repeats
            if len(lemmas) < min_lemmas or not seen_in_corpus:
                continue
            # the gloss is 'definition; "example"; "example"'
            definition = gloss.split('; "')[0].strip().rstrip(";").strip()
            synsets.append({"id": f"{offset}-{pos[0]}", "lemmas": lemmas, "definition": definition})
    return synsets


def _clean_lemma(word: str) -> str:
    # adjective markers like '(a)' only occur on adjectives, but strip them anyway
    word = word.split("(")[0]
    return word.replace("_", " ").lower()


def load_synsets(pos: str) -> list[dict]:
    if os.path.exists(os.path.join(WORDNET_DIR, POS_FILES[pos][0])):
        return read_wordnet(pos)
    extract = os.path.join(HERE, f"synsets_{pos}.jsonl")
    with open(extract, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def split(synsets: list[dict], held_out_lemma: str = "first", seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train, validation = [], []
    for index, synset in enumerate(synsets):
        lemmas = list(synset["lemmas"])
        held_out = lemmas.pop(0 if held_out_lemma == "first" else rng.randrange(len(lemmas)))
        row = {"definition": synset["definition"], "synset": index}
        validation.append({"word": held_out, **row})
        train += [{"word": lemma, **row} for lemma in lemmas]
    return train, validation


def write_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "data"))
    parser.add_argument("--pos", choices=sorted(POS_FILES), default="noun")
    parser.add_argument("--held-out", choices=("first", "random"), default="first",
                        help="which lemma of each synset is held out: WordNet's first (most frequent) or a random one")
    parser.add_argument("--seed", type=int, default=0, help="for --held-out random")
    parser.add_argument("--extract", action="store_true", help=f"rewrite synsets_<pos>.jsonl from {WORDNET_DIR}")
    args = parser.parse_args()
    if args.extract:
        write_jsonl(os.path.join(HERE, f"synsets_{args.pos}.jsonl"), read_wordnet(args.pos))
        return
    synsets = load_synsets(args.pos)
    train, validation = split(synsets, args.held_out, args.seed)
    os.makedirs(args.out, exist_ok=True)
    write_jsonl(os.path.join(args.out, "train.jsonl"), train)
    write_jsonl(os.path.join(args.out, "validation.jsonl"), validation)
    print(f"{len(synsets)} {args.pos} synsets: {len(train)} training pairs, {len(validation)} held-out words -> {args.out}")


if __name__ == "__main__":
    main()
