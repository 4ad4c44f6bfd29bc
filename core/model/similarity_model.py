"""SimilarityModel: encoders + head, for encoding objects; saving and loading servable models.

This module never imports training code (Lightning, pytorch-metric-learning), and loading
imports only the plugins the manifest names.
"""
from __future__ import annotations

import os
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import simplug
import torch
from simplug.components.distance import resolve_distance
from simplug.components.encoder import Encoder
from simplug.components.head import EncoderHead
from simplug.errors import ConfigError, ModelFormatError
from simplug.files import atomic_directory, reading_checked, write_bytes_atomic
from simplug.model.card import MODEL_CARD, render_model_card
from simplug.model.components import describe_component, resolve_component
from simplug.model.local_code import (
    LocalCodeLoader,
    LocalCodeWriter,
    loading_local_code,
    saving_local_code,
)
from simplug.model.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HEAD_WEIGHTS,
    MANIFEST_FILE,
    file_table,
    files_under,
    model_files,
    read_manifest,
    write_manifest,
)
from simplug.model.torch_spec import build_with_weights, read_safetensors
from simplug.registry import Registry, get_registry
from torch import nn

DEFAULT_ENCODER_KEY = "default"
#: the two sides of pair data: ``obj_a`` is the query, ``obj_b`` the document
SIDES = ("query", "document")
#: how embeddings are compared when neither the training nor the user said otherwise
DEFAULT_DISTANCE = "cosine"


def check_side(side: Any) -> str:
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; a side is one of {', '.join(map(repr, SIDES))} (or None for a shared head)")
    return side


def move_to_device(obj: Any, device: torch.device | str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        moved = {k: move_to_device(v, device) for k, v in obj.items()}
        return type(obj)(moved) if hasattr(obj, "to") else moved
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to_device(v, device) for v in obj)
    if hasattr(obj, "to"):
        return obj.to(device)
    return obj


#: a function from a list of records to a batch (the name Quaterion users know)
CollateFnType = Callable[[Sequence[Any]], dict[str, Any]]


class ModelCollate:
    """Each encoder's collate over the same records, plus what a routing head reads from them.
    A class, not a closure, so that it pickles into ``spawn``-started loader workers."""

    def __init__(self, collates: Mapping[str, Callable[[list[Any]], Any]],
                 prepare: Callable[[list[Any]], tuple[list[Any], dict[str, Any]]] | None = None):
        self.collates = dict(collates)
        self.prepare = prepare

    def __call__(self, records: Sequence[Any]) -> dict[str, Any]:
        records, extra = self.prepare(list(records)) if self.prepare is not None else (list(records), {})
        return {**{key: fn(records) for key, fn in self.collates.items()}, **extra}


class SimilarityModel(nn.Module):
    """One encoder or several named encoders, their outputs concatenated (in sorted key
    order), then the head.

    ``head`` may also be a dict ``{"query": head, "document": head}``: a two-tower model
    whose sides (``obj_a`` and ``obj_b`` of pair data) get their own heads, for data where
    the two sides differ (question vs answer, word vs definition). A one-sided model is the
    case with an ``empty`` head on the document side. Such a model encodes with
    ``encode(inputs, side="query")`` or ``side="document"``.
    """

    def __init__(self, encoders: Encoder | Mapping[str, Encoder], head: EncoderHead | Mapping[str, EncoderHead]):
        super().__init__()
        if isinstance(encoders, Encoder):
            encoders = {DEFAULT_ENCODER_KEY: encoders}
        if not isinstance(encoders, Mapping) or not encoders:
            raise ConfigError("encoders must be an Encoder or a non-empty dict of named Encoders")
        for key, encoder in encoders.items():
            if not isinstance(encoder, Encoder):
                raise ConfigError(
                    f"encoder {key!r} is a {type(encoder).__name__}, not a simplug Encoder; wrap a "
                    "plain torch module with the 'torch_module' encoder"
                )
        self.encoders = nn.ModuleDict({k: encoders[k] for k in sorted(encoders)})
        total = sum(e.embedding_size for e in self.encoders.values())
        if isinstance(head, Mapping):
            if sorted(head) != sorted(SIDES):
                raise ConfigError(
                    f"per-side heads need exactly the sides {', '.join(SIDES)}, got {', '.join(map(repr, head)) or 'none'}; "
                    "for a head on the query side only give the document side the 'empty' head"
                )
            self.head: EncoderHead | None = None
            self.side_heads: nn.ModuleDict | None = nn.ModuleDict({side: head[side] for side in SIDES})
        else:
            self.head = head
            self.side_heads = None
        for where, one in self.heads.items():
            if not isinstance(one, EncoderHead):
                raise ConfigError(f"{where} must be a simplug EncoderHead, got {type(one).__name__}")
            if self.side_heads is not None and one.reads_batch:
                raise ConfigError(
                    f"the {where} {type(one).__name__} routes rows by what the batch holds, which a "
                    "per-side head cannot do; use it as the one shared head"
                )
            if total != one.input_embedding_size:
                sizes = ", ".join(f"{k}={e.embedding_size}" for k, e in self.encoders.items())
                raise ConfigError(
                    f"the encoders produce embeddings of size {total} ({sizes}) but the {where} "
                    f"{type(one).__name__} expects input_embedding_size={one.input_embedding_size}; "
                    f"build the head with input_embedding_size={total}"
                )
        output_sizes = {where: one.output_size for where, one in self.heads.items()}
        if len(set(output_sizes.values())) > 1:
            raise ConfigError(
                f"the two sides must give embeddings of one size to be compared, but the heads give "
                f"{output_sizes}; choose heads with equal output sizes"
            )

    @property
    def heads(self) -> dict[str, EncoderHead]:
        """``{"head": head}`` for a shared head, else ``{"query head": ..., "document head": ...}``."""
        if self.side_heads is None:
            return {"head": self.head}
        return {f"{side} head": self.side_heads[side] for side in SIDES}

    @property
    def sides(self) -> tuple[str, ...]:
        """The sides with their own head; empty for a shared head."""
        return () if self.side_heads is None else SIDES

    @property
    def embedding_size(self) -> int:
        return next(iter(self.heads.values())).output_size

    def get_collate_fn(self) -> "CollateFnType":
        """A picklable function from records to a batch: loader workers started with ``spawn``
        (the default on macOS and Windows) receive it by pickling."""
        collates = {key: encoder.get_collate_fn() for key, encoder in self.encoders.items()}
        prepare = self.head.prepare_records if self.head is not None and self.head.reads_batch else None
        return ModelCollate(collates, prepare)

    def encoder_embeddings(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The encoders' outputs, concatenated; frozen encoders run without gradients."""
        parts = []
        for key, encoder in self.encoders.items():
            if encoder.trainable:
                out = encoder(batch[key])
            else:
                with torch.no_grad():
                    out = encoder(batch[key])
            if out.dim() != 2 or out.shape[1] != encoder.embedding_size:
                raise ConfigError(
                    f"encoder {key!r} ({type(encoder).__name__}) returned a tensor of shape "
                    f"{tuple(out.shape)} but declares embedding_size={encoder.embedding_size}; "
                    "fix its embedding_size or its forward"
                )
            parts.append(out)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def forward(self, batch: Mapping[str, Any], side: str | torch.Tensor | None = None) -> torch.Tensor:
        return self.apply_heads(self.encoder_embeddings(batch), side, batch)

    def apply_heads(
        self, embeddings: torch.Tensor, side: str | torch.Tensor | None = None, batch: Any = None
    ) -> torch.Tensor:
        """The head(s) on encoder embeddings. ``side``: ``None`` (shared head only), a side
        name for all rows, or a boolean tensor with one value per row, True where the row
        is on the document side (see :func:`pair_document_mask`). ``batch`` is the collated
        input, for heads that read it (``reads_batch``, e.g. the switch head)."""
        if self.side_heads is None:
            if side is not None and not isinstance(side, torch.Tensor):
                check_side(side)
            if self.head.reads_batch:  # e.g. the switch head reads each row's route from the batch
                return self.head(embeddings, batch)
            return self.head(embeddings)  # one head serves both sides
        if side is None:
            raise _side_needed()
        if not isinstance(side, torch.Tensor):
            return self.side_heads[check_side(side)](embeddings)
        is_document = side.to(device=embeddings.device, dtype=torch.bool)
        if is_document.shape != embeddings.shape[:1]:
            raise ValueError(f"side mask of shape {tuple(is_document.shape)} does not fit {embeddings.shape[0]} rows")
        query_rows = (~is_document).nonzero().squeeze(1)
        document_rows = is_document.nonzero().squeeze(1)
        query_out = self.side_heads["query"](embeddings[query_rows])
        document_out = self.side_heads["document"](embeddings[document_rows])
        out = query_out.new_empty(embeddings.shape[0], query_out.shape[1])
        out = out.index_copy(0, query_rows, query_out)
        return out.index_copy(0, document_rows, document_out.to(out.dtype))

    @property
    def device(self) -> torch.device:
        for param in self.parameters():
            return param.device
        for buf in self.buffers():
            return buf.device
        return torch.device("cpu")

    def encode(
        self,
        inputs: Sequence[Any],
        batch_size: int = 32,
        to_numpy: bool = True,
        show_progress: bool = False,
        side: str | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embeddings of ``inputs`` (a list of raw objects), computed in batches in eval mode.

        ``side`` ("query" or "document") picks the head of a model with one per side; a
        model with a shared head accepts it and encodes both sides alike.
        """
        if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__len__"):
            raise TypeError(
                f"encode takes a list of objects, got {type(inputs).__name__}; for one object "
                "write encode([obj])"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if side is not None:
            check_side(side)
        elif self.side_heads is not None:
            raise _side_needed()
        result = self._run_batches(inputs, batch_size, partial(self.forward, side=side), show_progress)
        return result.numpy() if to_numpy else result

    def encoder_outputs(self, inputs: Sequence[Any], batch_size: int = 32) -> torch.Tensor:
        """The encoders' concatenated outputs for ``inputs`` (what the head takes), in eval mode."""
        return self._run_batches(inputs, batch_size, self.encoder_embeddings)

    def _run_batches(
        self, inputs: Sequence[Any], batch_size: int, fn: Callable[[Any], torch.Tensor], show_progress: bool = False
    ) -> torch.Tensor:
        was_training = self.training
        self.eval()
        collate = self.get_collate_fn()
        device = self.device
        order = self.encode_order(inputs)
        ordered = inputs if order is None else [inputs[i] for i in order]
        outputs = []
        try:
            with torch.inference_mode():
                starts = range(0, len(ordered), batch_size)
                if show_progress:
                    from tqdm import tqdm

                    starts = tqdm(starts, desc="encoding", unit="batch")
                for start in starts:
                    batch = collate(list(ordered[start : start + batch_size]))
                    outputs.append(fn(move_to_device(batch, device)).float().cpu())
        finally:
            self.train(was_training)
        if not outputs:
            return torch.empty(0, self.embedding_size)
        result = torch.cat(outputs)
        if order is not None:
            unsorted = torch.empty_like(result)
            unsorted[torch.as_tensor(order, dtype=torch.long)] = result
            result = unsorted
        return result

    def encode_order(self, inputs: Sequence[Any]) -> Sequence[int] | None:
        """The order to encode ``inputs`` in (e.g. texts by length), or None for as given."""
        for encoder in self.encoders.values():
            order = encoder.cache_fill_order(inputs)
            if order is not None:
                return order
        return None

    # -------------------------------------------------------------- similarity
    @property
    def distance(self) -> str:
        """The registered distance this model's embeddings are compared with: the one it was
        trained with (recorded in the manifest), or what was assigned, or ``cosine``."""
        chosen = self.__dict__.get("_distance")
        if chosen is None:
            chosen = (getattr(self, "manifest", None) or {}).get("similarity", {}).get("distance")
        return chosen or DEFAULT_DISTANCE

    @distance.setter
    def distance(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a model's distance is a registered distance name, got {name!r}")
        self.__dict__["_distance"] = name

    def similarity(self, a: Sequence[Any], b: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """``(len(a), len(b))`` similarities (larger = more alike) under the model's distance.

        ``a`` are queries and ``b`` documents: a model with a head per side encodes each on its
        own side. Either may also be an array of embeddings from ``encode``.
        """
        def embed(objects: Any, side: str | None) -> torch.Tensor:
            if isinstance(objects, (np.ndarray, torch.Tensor)):
                return torch.as_tensor(objects, dtype=torch.float32).reshape(-1, self.embedding_size)
            return self.encode(objects, batch_size=batch_size, to_numpy=False, side=side)

        query_side, document_side = ("query", "document") if self.sides else (None, None)
        with torch.inference_mode():
            scores = resolve_distance(self.distance).similarity_matrix(embed(a, query_side), embed(b, document_side))
        return scores.float().numpy()

    # ------------------------------------------------------------------ saving
    def save(self, path: str, training: dict[str, Any] | None = None) -> str:
        """Write a servable model directory atomically (see ``DESIGN.md``: saved models).

        ``training`` (what ``TrainableModel`` and ``simplug train`` know: the loss, the data,
        held-out metrics) goes into the manifest and the model card; the loss's distance
        becomes the model's similarity unless one was assigned to ``model.distance``.
        """
        from safetensors.torch import save_file

        registry = get_registry()
        writer = LocalCodeWriter()
        components = []
        with atomic_directory(path, replaces_only=MANIFEST_FILE) as tmp, saving_local_code(writer):
            for key, encoder in self.encoders.items():
                rel = f"encoders/{key}"
                entry = describe_component(registry, "encoders", encoder, role=f"encoder:{key}")
                entry["path"] = rel
                entry["trainable"] = encoder.trainable
                entry["embedding_size"] = encoder.embedding_size
                entry["requires"] = list(getattr(type(encoder), "requires", ()))
                os.makedirs(os.path.join(tmp, rel), exist_ok=True)  # encoders may expect their folder to exist
                encoder.save(os.path.join(tmp, rel))
                components.append(entry)
            if self.side_heads is None:
                head_files = {"head": (self.head, HEAD_WEIGHTS)}
            else:
                head_files = {f"head:{side}": (self.side_heads[side], f"head_{side}.safetensors") for side in SIDES}
            for role, (head, weights) in head_files.items():
                head_entry = describe_component(registry, "heads", head, role=role)
                head_entry["weights"] = weights
                head_entry["requires"] = list(getattr(type(head), "requires", ()))
                state = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
                save_file(state, os.path.join(tmp, weights))
                components.append(head_entry)
            local = writer.write(tmp)
            # the manifest says which files each component needs: a missing one is an error on
            # load, never a component left with its random initial weights
            table = file_table(tmp)
            for entry in components:
                entry["files"] = files_under(table, entry["path"]) if "path" in entry else [entry["weights"]]
            manifest = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "simplug_version": simplug.__version__,
                "torch_version": torch.__version__.split("+")[0],
                "embedding_size": self.embedding_size,
                "encoders": list(self.encoders),
                "sides": list(self.sides),
                "components": components,
                "local_code": local,
                "training": training or {},
                "similarity": self._similarity_record(training or {}),
            }
            card = render_model_card(manifest, os.path.basename(os.path.abspath(path))).encode("utf-8")
            # the card's entry from the bytes written: the other files were hashed once already
            table[MODEL_CARD] = {"size": len(card), "sha256": write_bytes_atomic(os.path.join(tmp, MODEL_CARD), card)}
            write_manifest(tmp, manifest, dict(sorted(table.items())))
        return path

    def _similarity_record(self, training: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest's ``similarity``: the distance to compare embeddings with, and whether
        the model's embeddings leave it with unit length (a head may normalise them)."""
        loss_config = (training.get("loss") or {}).get("config") or {}
        distance = self.__dict__.get("_distance") or loss_config.get("distance_metric_name") or self.distance
        normalized = all(bool(getattr(head, "normalizes_output", False)) for head in self.heads.values())
        return {"distance": distance, "normalized": normalized}

    @classmethod
    def load(
        cls,
        path: str,
        trust_local_code: bool = False,
        device: str | torch.device = "cpu",
    ) -> "SimilarityModel":
        """Load a saved model, importing only the plugins its manifest names.

        The manifest is validated and every file checked first; then every file a component
        reads goes through the model's checked reader (listed, inside the model, intact)."""
        for attempt in range(_LOAD_ATTEMPTS):
            before = _directory_identity(path)
            try:
                return cls._load_once(path, trust_local_code, device)
            except ModelFormatError:
                # a save that replaced the model while it was read makes its files disagree with
                # the manifest read first: read the new model; any other failure is the model's
                if attempt == _LOAD_ATTEMPTS - 1 or _directory_identity(path) == before:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def _load_once(cls, path: str, trust_local_code: bool, device: str | torch.device) -> "SimilarityModel":
        manifest = read_manifest(path)
        files = model_files(path, manifest)
        registry = Registry(autoload=False, strict=True)
        loader = LocalCodeLoader(path) if trust_local_code else None
        encoders: dict[str, Encoder] = {}
        heads: dict[str, EncoderHead] = {}
        with loading_local_code(loader, path), reading_checked(files):
            for component in manifest["components"]:
                component_cls = resolve_component(registry, component)
                role = component["role"]
                if role.startswith("encoder:"):
                    encoders[role.split(":", 1)[1]] = component_cls.load(os.path.join(path, component["path"]))
                elif role == "head" or role.startswith("head:"):
                    heads[role] = _load_head(component_cls, component, files)
                else:
                    raise ModelFormatError(f"unknown component role {role!r} in {path}")
        if not heads or not encoders:
            raise ModelFormatError(f"{path} does not describe both encoders and a head")
        if "head" in heads:
            head_or_heads: EncoderHead | dict[str, EncoderHead] = heads["head"]
        else:
            head_or_heads = {role.split(":", 1)[1]: h for role, h in heads.items()}
            if sorted(head_or_heads) != sorted(SIDES):
                raise ModelFormatError(f"{path} has heads for sides {sorted(head_or_heads)}; expected {list(SIDES)}")
        try:
            model = cls(encoders, head_or_heads)
        except ConfigError as exc:
            raise ModelFormatError(f"{path}: its components do not fit together ({exc}); save the model again") from None
        model.manifest = manifest
        model.source_path = os.path.abspath(path)  # named by messages about indexes it built
        model.eval()
        return model.to(device)


_LOAD_ATTEMPTS = 3


def _directory_identity(path: str) -> tuple[int, int] | None:
    """Which directory is at ``path`` now (a save replaces it with another one)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _load_head(component_cls: type, component: dict[str, Any], files: Any) -> EncoderHead:
    """A head built from its config and weights, sizes checked before anything is allocated."""
    where = f"weights of {component['role']} ({component['weights']})"
    state = read_safetensors(files.read_bytes(component["weights"], "head weights"), where)

    def build() -> EncoderHead:
        try:
            head = component_cls(**component.get("config", {}))
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"the config of {component['role']} does not build a {component_cls.__name__}: {exc}") from None
        if not isinstance(head, EncoderHead):
            raise ModelFormatError(f"{component['role']} built a {type(head).__name__}, not a simplug EncoderHead")
        return head

    return build_with_weights(build, state, where)


def _side_needed() -> ValueError:
    return ValueError(
        f"this model has a head for each side; say which one: side={SIDES[0]!r} (obj_a of the "
        f"training pairs) or side={SIDES[1]!r} (obj_b)"
    )


def pair_document_mask(pairs: torch.Tensor, n: int) -> torch.Tensor:
    """One bool per embedding of a pair batch: True for the document side (``obj_b``,
    ``pairs[:, 1]``), False for queries and for anything not in a pair."""
    mask = torch.zeros(n, dtype=torch.bool, device=pairs.device)
    mask[pairs[:, 1]] = True
    return mask
