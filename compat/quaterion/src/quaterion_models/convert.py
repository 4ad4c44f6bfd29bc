"""Convert a model saved by the original quaterion-models into a simplug model directory.

The original's directory: ``config.json`` (``{"encoders": [{"key", "module", "class"}],
"head": {"module", "class"}}``), ``head/`` (``config.json`` + ``weights.bin``) and
``encoders/<key>/`` (whatever each encoder's ``save`` wrote).

Rebuilding the encoders means importing the user's classes named in ``config.json`` and running
their ``load`` (which may unpickle files): that happens only with ``trust_code=True``. Heads of
quaterion-models' own kinds are rebuilt from their JSON config and their weights read with
``torch.load(weights_only=True)``; nothing is unpickled without the flag.

    python -m quaterion_models.convert OLD_DIR NEW_DIR --trust-code
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional

log = logging.getLogger("quaterion_models.convert")

#: head classes of quaterion-models, by the import path the original recorded
BUILTIN_HEADS = {
    f"quaterion_models.heads.{module}": cls
    for module, cls in [
        ("empty_head", "EmptyHead"), ("gated_head", "GatedHead"), ("skip_connection_head", "SkipConnectionHead"),
        ("softmax_head", "SoftmaxEmbeddingsHead"), ("stacked_projection_head", "StackedProjectionHead"),
        ("widening_head", "WideningHead"), ("sequential_head", "SequentialHead"), ("switch_head", "SwitchHead"),
    ]
}
_NOT_SERVABLE = {"SwitchHead": "it routes rows by per-record meta, which simplug's model does not pass to heads"}


class ConversionError(ValueError):
    """The directory cannot be converted; the message names the problem and the fix."""


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ConversionError(f"{path} is missing: is this a model saved by quaterion-models' SimilarityModel.save?") from None
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path} is not valid JSON ({exc})") from None


def _class_path(record: Dict[str, str]) -> str:
    return f"{record['module']}.{record['class']}"


def _import(record: Dict[str, str]) -> type:
    module = importlib.import_module(record["module"])
    target: Any = module
    for part in record["class"].split("."):
        target = getattr(target, part)
    return target


def _save_into_existing_dir(encoder: Any) -> None:
    """The original created each encoder's directory before calling its ``save``; user encoders
    rely on that, simplug's model does not do it."""
    save = encoder.save
    if getattr(save, "_creates_dir", False):
        return

    def save_in_created_dir(output_path: str) -> None:
        os.makedirs(output_path, exist_ok=True)
        save(output_path)

    save_in_created_dir._creates_dir = True  # type: ignore[attr-defined]
    encoder.save = save_in_created_dir


def describe_quaterion_model(old_dir: str) -> Dict[str, Any]:
    """What converting ``old_dir`` would import: ``{"encoders": {key: "module.Class"}, "head": ...}``."""
    config = _read_json(os.path.join(old_dir, "config.json"))
    if "encoders" not in config or "head" not in config:
        raise ConversionError(f"{old_dir}/config.json lacks 'encoders' or 'head': not a quaterion-models model")
    return {
        "encoders": {rec["key"]: _class_path(rec) for rec in config["encoders"]},
        "head": _class_path(config["head"]),
    }


def _load_head(head_record: Dict[str, str], head_dir: str, trust_code: bool):
    import torch

    from quaterion_models import heads as compat_heads

    name = head_record["class"]
    if head_record["module"] in BUILTIN_HEADS and BUILTIN_HEADS[head_record["module"]] == name:
        if name in _NOT_SERVABLE:
            raise ConversionError(f"cannot convert a model with a {name}: {_NOT_SERVABLE[name]}")
        cls = getattr(compat_heads, name)
        if name == "SequentialHead":
            if not trust_code:
                raise ConversionError(
                    f"the SequentialHead in {head_dir} was saved by pickling a torch module; unpickling runs "
                    "code from the file. Convert with trust_code=True (--trust-code) if you trust its source"
                )
            config = _read_json(os.path.join(head_dir, "config.json"))
            sequential = torch.load(os.path.join(head_dir, "weights.bin"), map_location="cpu", weights_only=False)
            return cls(*sequential, **config)
        return cls.load(head_dir)
    if not trust_code:
        raise ConversionError(
            f"the head is the user class {_class_path(head_record)}; converting imports it and runs its load. "
            "Pass trust_code=True (--trust-code) if you trust that code"
        )
    return _import(head_record).load(head_dir)


def to_simplug_model(encoders: Dict[str, Any], head: Any):
    """A ``simplug.serving.SimilarityModel`` of these quaterion_models encoders and head (the same
    module objects), ready for its ``save``: the drop-in's heads are simplug plugins, a
    ``SequentialHead`` becomes simplug's JSON-described sequential head; a ``SwitchHead`` is refused."""
    from quaterion import _simplug
    from quaterion_models.heads import SequentialHead, SwitchHead

    if isinstance(head, SwitchHead):
        raise ConversionError(f"cannot convert a model with a SwitchHead: {_NOT_SERVABLE['SwitchHead']}")
    for key, encoder in encoders.items():
        if not isinstance(encoder, _simplug.Encoder):
            raise ConversionError(
                f"encoder {key!r} is a {type(encoder).__name__}, not an Encoder of quaterion_models; "
                "install simplug-quaterion-compat before importing its class"
            )
        encoder.disable_gradients_if_required()
        _save_into_existing_dir(encoder)
    if isinstance(head, SequentialHead):
        total = sum(encoder.embedding_size for encoder in encoders.values())
        head = _simplug.NativeSequentialHead(input_embedding_size=total, layers=list(head._sequential),
                                             output_size=head.output_size)
    return _simplug.SimilarityModel(dict(encoders), head)


def convert_quaterion_model(old_dir: str, new_dir: str, trust_code: bool = False) -> str:
    """Read the original's saved model in ``old_dir`` and write a simplug model to ``new_dir``.

    ``trust_code=True`` allows importing the encoder (and custom head) classes named in
    ``config.json`` and running their ``load``; without it a model that needs them is refused with
    the list of classes. Returns ``new_dir``.
    """
    described = describe_quaterion_model(old_dir)
    config = _read_json(os.path.join(old_dir, "config.json"))
    if not trust_code:
        raise ConversionError(
            "converting imports these classes named in "
            f"{os.path.join(old_dir, 'config.json')} and runs their load(): "
            + ", ".join(f"encoder {k}: {v}" for k, v in described["encoders"].items())
            + ". Pass trust_code=True (--trust-code) if you trust that code"
        )
    log.warning("trust_code=True: importing %s", ", ".join([*described["encoders"].values(), described["head"]]))
    if os.path.exists(new_dir) and os.listdir(new_dir):
        raise ConversionError(f"{new_dir} exists and is not empty; choose a new directory")
    head = _load_head(config["head"], os.path.join(old_dir, "head"), trust_code)
    encoders = {}
    for record in config["encoders"]:
        encoders[record["key"]] = _import(record).load(os.path.join(old_dir, "encoders", record["key"]))
    model = to_simplug_model(encoders, head)
    return model.save(new_dir, training={"converted_from": "quaterion-models", "source": os.path.abspath(old_dir)})


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quaterion_models.convert",
        description="Convert a model saved by quaterion-models into a simplug model directory.",
    )
    parser.add_argument("old_dir")
    parser.add_argument("new_dir")
    parser.add_argument("--trust-code", action="store_true",
                        help="import the encoder/head classes named in config.json and run their load()")
    args = parser.parse_args(argv)
    try:
        described = describe_quaterion_model(args.old_dir)
        if not args.trust_code:
            print("This model names these classes; converting imports them and runs their load():", file=sys.stderr)
            for key, path in described["encoders"].items():
                print(f"  encoder {key}: {path}", file=sys.stderr)
            print(f"  head: {described['head']}", file=sys.stderr)
            print("Rerun with --trust-code if you trust that code.", file=sys.stderr)
            return 2
        print(f"--trust-code: importing {', '.join([*described['encoders'].values(), described['head']])}",
              file=sys.stderr)
        out = convert_quaterion_model(args.old_dir, args.new_dir, trust_code=True)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"converted {args.old_dir} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
