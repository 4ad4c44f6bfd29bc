"""Hyperparameter search over cached encoder outputs: the search space of a job config, the
validation split carved from the training data, per-epoch scoring with best-epoch selection and
pruning, constraints, the Pareto front, and the Optuna study (``simplug tune``).

Optuna is the ``[tune]`` extra: it is imported only by the functions that need it, so
``simplug train`` (which uses the best-epoch selection here) runs without it.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import os
import random
import re
import time
import warnings
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import pytorch_lightning as pl
import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import save as save_safetensors
from simplug.components.encoder import Encoder
from simplug.errors import ConfigError, DataError, SimplugError
from simplug.evaluation.heldout import HeldOutScorer, retrieval_task
from simplug.evaluation.retrieval import default_metric_specs
from simplug.files import write_bytes_atomic
from simplug.registry import get_registry
from simplug.registry.building import positive_int
from simplug.training.cache.files import encoder_fingerprint, update_content_digest

UNTRAINED = "untrained"  # a constraint's bound: the untrained encoder's value of the same metric
TUNABLE_SECTIONS = ("model", "train")
# [train] keys that a trial cannot vary: they say where or how the job runs, not what it learns
_FIXED_TRAIN_KEYS = ("cache", "cache_dir", "num_workers", "accelerator", "validate", "select_best",
                     "validation_share")


# ---------------------------------------------------------------------------- validation split
def carve_validation(samples: Sequence[Any], kind: str, share: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Split training samples into (fit, validation): per group for group data (every group keeps
    at least one item on each side), a seeded shuffle for pairs. Deterministic for ``seed``."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise ConfigError(f"the validation share must be a number between 0 and 1 (e.g. 0.2), got {share!r}")
    rng = random.Random(seed)
    if kind != "groups":
        order = list(range(len(samples)))
        rng.shuffle(order)
        n_val = round(len(samples) * share)
        if n_val < 1 or n_val >= len(samples):
            raise DataError(
                f"carving a validation share of {share} from {len(samples)} training pairs leaves "
                f"{n_val} to validate and {len(samples) - n_val} to train; both need at least one: add data or change the share"
            )
        held = set(order[:n_val])
        return ([s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held])
    by_group: dict[Any, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        by_group[sample.group].append(i)
    small = sorted((len(items), group) for group, items in by_group.items() if len(items) < 2)
    if small:
        listed = ", ".join(f"group {group!r} has {n}" for n, group in small[:5])
        raise DataError(
            f"carving a validation split needs at least 2 training items in every group (one to validate, "
            f"one to retrieve), but {len(small)} of {len(by_group)} groups have fewer ({listed}"
            f"{', ...' if len(small) > 5 else ''}); add items to those groups or drop them from the training data"
        )
    held: set[int] = set()
    for group in sorted(by_group, key=repr):
        items = list(by_group[group])
        rng.shuffle(items)
        n_val = min(len(items) - 1, max(1, round(len(items) * share)))
        held.update(items[:n_val])
    return ([s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held])


# ---------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class SearchParam:
    """One tuned config key: a range (``low``/``high``, optional ``step`` or ``log``) or ``choices``."""

    key: str  # dotted, e.g. "model.optimizer.lr"
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step) if v is not None)

    @staticmethod
    def _stored_choice(value: Any) -> Any:
        # Optuna stores plain values; tables (e.g. a head with its arguments) travel as JSON
        return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            encoded = [self._stored_choice(c) for c in self.choices]
            picked = trial.suggest_categorical(self.key, encoded)
            return self.choices[encoded.index(picked)]
        if self.is_int:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def encoded(self, value: Any) -> Any:
        """``value`` as this parameter stores it in a study, or ``None`` when the space does not
        hold it (outside the range, off its steps, not among the choices)."""
        if self.choices is not None:
            options = [self._stored_choice(c) for c in self.choices]
            plain = self._stored_choice(value)
            return plain if any(plain == o and type(plain) is type(o) for o in options) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return None
        if self.step is not None:
            steps = (value - self.low) / self.step
            if abs(steps - round(steps)) > 1e-9:
                return None
        if self.is_int:
            return int(value) if value == int(value) else None
        return float(value)


def config_values(sections: Mapping[str, Any], params: Sequence[SearchParam]) -> dict[str, Any]:
    """The job's own values of the tuned keys, where the space holds them: enqueued as the first
    trial, so a search never ends below the setting the user started from (on the validation
    split). A key the config leaves out (a component's default) is left to the sampler."""
    values = {}
    for param in params:
        table: Any = sections
        for depth, name in enumerate(param.path):
            if isinstance(table, str) and component_kind(param.path[:depth]):
                table = {"name": table}  # loss = "triplet" is {name = "triplet"}
            table = table.get(name) if isinstance(table, Mapping) else None
        stored = param.encoded(table) if table is not None else None
        if stored is not None:
            values[param.key] = stored
    return values


def parse_space(space: Any, sections: Mapping[str, Any], where: str = "[tune.space]",
                train_keys: Iterable[str] = ()) -> list[SearchParam]:
    """The search space of ``[tune.space]``, checked against the job's own sections: each key
    names an existing config key, or an argument that the component it belongs to accepts."""
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(
            f"{where} must be a table of dotted config keys, e.g. \"model.optimizer.lr\" = {{low = 1e-4, high = 1e-2, log = true}}"
        )
    names = space_component_names(space)
    for path, choices in names.items():  # an unknown name fails now, naming the close matches
        try:
            component_classes(path.split("."), {}, {path: choices})
        except SimplugError as exc:
            raise ConfigError(f"{where}: \"{path}.name\": {exc}") from None
    params = []
    for key, spec in space.items():
        param = _parse_param(str(key), spec, where)
        _check_key_exists(param, sections, where, set(train_keys), names)
        params.append(param)
    return params


def _parse_param(key: str, spec: Any, where: str) -> SearchParam:
    path = key.split(".")
    if len(path) < 2 or not all(path):
        raise ConfigError(f"{where}: {key!r} is not a dotted config key such as \"model.optimizer.lr\" or \"train.epochs\"")
    if path[0] not in TUNABLE_SECTIONS:
        raise ConfigError(f"{where}: {key!r} is in [{path[0]}]; a search space covers the sections {', '.join(TUNABLE_SECTIONS)}")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: {key!r} must be a table: {{low = ..., high = ...}} or {{choices = [...]}}, got {spec!r}")
    allowed = {"low", "high", "step", "log", "choices"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(f"{where}: {key!r} has unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(sorted(allowed))}")
    if "choices" in spec:
        if set(spec) - {"choices"}:
            raise ConfigError(f"{where}: {key!r} gives choices and a range; give one of them")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: {key!r} choices must be a non-empty list, got {choices!r}")
        return SearchParam(key, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: {key!r} needs low and high (a range) or choices")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ConfigError(f"{where}: {key!r} {name} must be a finite number, got {value!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: {key!r} log must be true or false, got {log!r}")
    if low == high:
        raise ConfigError(f"{where}: {key!r} has an empty range (low = high = {low}); widen it, or set the key in its section instead")
    if low > high:
        raise ConfigError(f"{where}: {key!r} has an inverted range (low {low} > high {high}); swap them")
    if step is not None:
        if step <= 0:
            raise ConfigError(f"{where}: {key!r} step must be positive, got {step}")
        if log:
            raise ConfigError(f"{where}: {key!r} gives both step and log; Optuna samples a log range without steps")
        if step > high - low:
            raise ConfigError(f"{where}: {key!r} step {step} is larger than the range {low}..{high}; the range holds one value")
    if log and low <= 0:
        raise ConfigError(f"{where}: {key!r} is a log range, so low must be positive, got {low}")
    return SearchParam(key, low=low, high=high, step=step, log=log)


def component_kind(path: Sequence[str]) -> str | None:
    """The registry kind of the component a ``model.*`` path points into, or ``None``."""
    if len(path) < 2 or path[0] != "model":
        return None
    if path[1] in ("encoder", "encoders"):
        return "encoders"
    if path[1] in ("head", "heads"):
        return "heads"
    if path[1] == "loss":
        return "losses"
    return None


def _check_key_exists(param: SearchParam, sections: Mapping[str, Any], where: str, train_keys: set[str],
                      space_names: Mapping[str, Sequence[str]]) -> None:
    path = param.path
    if path[0] == "train":
        if len(path) != 2 or path[1] not in train_keys or path[1] in _FIXED_TRAIN_KEYS:
            tunable = sorted(k for k in train_keys if k not in _FIXED_TRAIN_KEYS)
            raise ConfigError(f"{where}: {param.key!r} is not a [train] key that a trial can vary; those keys are: {', '.join(tunable)}")
        return
    table: Any = sections.get("model", {})
    for depth in range(1, len(path)):
        name = path[depth]
        last = depth == len(path) - 1
        if isinstance(table, str) and component_kind(path[:depth]) is not None:
            table = {"name": table}  # loss = "triplet" is {name = "triplet"}
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: {param.key!r} goes into {'.'.join(path[:depth])}, which is not a table in the config")
        if name in table:
            table = table[name]
            continue
        if last and any(name in accepted_arguments(c) or "*" in accepted_arguments(c)
                        for c in component_classes(path[:depth], table, space_names)):
            return
        there = ", ".join(sorted(map(str, table))) or "(none)"
        hint = ""
        if last and (component_kind(path[:depth]) or path[1] == "optimizer"):
            hint = "; nor is it an argument of that component"
        raise ConfigError(f"{where}: {param.key!r} names a key that does not exist: {'.'.join(path[:depth])} has "
                          f"no {name!r}{hint}; the keys there are: {there}")


def component_classes(path: Sequence[str], table: Mapping[str, Any], space_names: Mapping[str, Sequence[str]]) -> list[Any]:
    names = list(space_names.get(".".join(path), []))
    if "name" in table and table["name"] not in names:
        names.append(table["name"])
    if len(path) >= 2 and path[1] == "optimizer":
        return [optimizer_class(n) for n in names if optimizer_class(n) is not None]
    kind = component_kind(path)
    if kind is None:
        return []
    return [get_registry().resolve(kind, n) for n in names if isinstance(n, str)]


def optimizer_class(name: Any) -> Any:
    if not isinstance(name, str):
        return None
    by_lower = {n.lower(): getattr(torch.optim, n) for n in dir(torch.optim) if inspect.isclass(getattr(torch.optim, n))}
    return by_lower.get(name.lower())


def accepted_arguments(target: Any) -> set[str]:
    try:
        signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
    except (TypeError, ValueError):
        return set()
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return {"*"}
    return {n for n in signature.parameters if n not in ("self", "params", "input_embedding_size")}


def space_component_names(space: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{"model.loss": ["triplet", ...]}`` for the component names a space chooses between."""
    out: dict[str, list[str]] = {}
    for key, spec in space.items():
        parts = str(key).split(".")
        if parts[-1] == "name" and isinstance(spec, Mapping) and isinstance(spec.get("choices"), list):
            out[".".join(parts[:-1])] = [c for c in spec["choices"] if isinstance(c, str)]
    return out


def apply_params(sections: Mapping[str, Any], params: Sequence[SearchParam], pick: Callable[[SearchParam], Any]) -> dict[str, Any]:
    """A copy of the job's ``{"model": ..., "train": ...}`` with every tuned key set by ``pick``.

    A component name is picked before its arguments; an argument the picked component does
    not take is not picked at all (Optuna's define-by-run space: a triplet margin exists only
    in trials that chose the triplet loss), and the config's own arguments that the picked
    component does not take are dropped."""
    out = {name: copy.deepcopy(dict(sections.get(name, {}))) for name in TUNABLE_SECTIONS}
    ordered = sorted(params, key=lambda p: (p.path[-1] != "name", len(p.path)))
    for param in ordered:
        path = param.path
        parent = _ensure_table(out, path[:-1])
        if path[-1] != "name" and len(path) >= 3 and (component_kind(path[:-1]) or path[1] == "optimizer"):
            classes = component_classes(path[:-1], parent, {})
            if classes and not any({path[-1], "*"} & accepted_arguments(c) for c in classes):
                continue
        parent[path[-1]] = pick(param)
        if path[-1] == "name" and len(path) >= 3:
            classes = component_classes(path[:-1], parent, {})
            if classes and "*" not in accepted_arguments(classes[0]):
                accepted = accepted_arguments(classes[0])
                for arg in [k for k in parent if k not in ("name", "args") and k not in accepted]:
                    del parent[arg]
    return out


def _ensure_table(root: dict[str, Any], path: Sequence[str]) -> dict[str, Any]:
    table: Any = root
    for depth, name in enumerate(path):
        value = table.get(name)
        if isinstance(value, str) and component_kind(path[: depth + 1]) is not None:
            value = table[name] = {"name": value}
        elif value is None:
            value = table[name] = {}
        table = value
    return table


# ---------------------------------------------------------------------------- constraints
_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_@.\-]+)\s*(>=|<=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric >= bound`` or ``metric <= bound``; the bound is a number or ``untrained`` (the
    untrained encoder's value of the same metric on the same split), optionally ``untrained - 0.01``."""

    metric: str
    op: str
    bound: float | None  # None: the untrained value
    slack: float = 0.0

    @classmethod
    def parse(cls, text: Any) -> "Constraint":
        match = _CONSTRAINT.match(text) if isinstance(text, str) else None
        bound_text = match.group(3) if match else ""
        if match and bound_text.startswith(UNTRAINED):
            rest = bound_text[len(UNTRAINED):]
            try:
                slack = float(rest) if rest else 0.0
            except ValueError:
                match = None
            else:
                return cls(match.group(1), match.group(2), None, slack)
        if match:
            try:
                return cls(match.group(1), match.group(2), float(bound_text))
            except ValueError:
                pass
        raise ConfigError(
            f"[tune] constraint {text!r} is not understood; write \"METRIC >= NUMBER\", \"METRIC <= NUMBER\" "
            f"or \"METRIC >= untrained\" (optionally \"untrained-0.01\"), e.g. \"retrieval_precision@1 >= untrained\""
        )

    def limit(self, untrained: Mapping[str, float]) -> float:
        return untrained[self.metric] + self.slack if self.bound is None else self.bound

    def violation(self, metrics: Mapping[str, float], untrained: Mapping[str, float]) -> float:
        """How far ``metrics`` miss this constraint; 0 when it holds."""
        value, limit = metrics[self.metric], self.limit(untrained)
        return max(0.0, limit - value if self.op == ">=" else value - limit)

    def __str__(self) -> str:
        bound = (UNTRAINED + (f"{self.slack:+g}" if self.slack else "")) if self.bound is None else f"{self.bound:g}"
        return f"{self.metric} {self.op} {bound}"


def parse_constraints(specs: Any, reported: Sequence[str]) -> list[Constraint]:
    """Constraints of ``[tune] constraints``; by default none of the reported metrics may fall
    below the untrained encoder's. A constraint on a metric that is not reported is an error."""
    if specs is None:
        return [Constraint(metric, ">=", None) for metric in reported]
    if not isinstance(specs, list):
        raise ConfigError(f"[tune] constraints is a list of strings such as \"retrieval_precision@1 >= untrained\", got {specs!r}")
    constraints = [Constraint.parse(s) for s in specs]
    for constraint in constraints:
        if constraint.metric not in reported:
            raise ConfigError(f"[tune] constraint {str(constraint)!r} is on {constraint.metric!r}, which is not reported; "
                              f"the reported metrics are: {', '.join(reported)}")
    return constraints


def total_violation(constraints: Sequence[Constraint], metrics: Mapping[str, float], untrained: Mapping[str, float]) -> float:
    return sum(c.violation(metrics, untrained) for c in constraints)


# ---------------------------------------------------------------------------- scoring
class EmbeddedTask(HeldOutScorer):
    """A retrieval task (``kind`` queries against candidates) scored from encoder outputs: the
    head(s) of the model being scored run on fixed encoder outputs, so scoring after every epoch
    costs a head pass and a similarity matrix. Metrics: those of ``simplug train`` and, for group
    data, the k-NN vote (``knn_accuracy@k``), all through the one ranking engine."""

    def __init__(self, kind: str, queries: Sequence[Any], candidates: Sequence[Any], distance: str = "cosine",
                 ks: Sequence[int] = (1, 5, 10), knn: int = 10, candidate_mode: str = "train"):
        task = retrieval_task(kind, queries, candidates, candidate_mode)
        specs = default_metric_specs(kind, ks) + ([{"name": "knn_accuracy", "k": knn}] if kind == "groups" else [])
        super().__init__(task, distance, ks, metrics=specs)
        self.kind = kind

    @property
    def description(self) -> str:
        return self.task.description

    def use_outputs_table(self, table: "EncoderOutputs") -> None:
        """Take the encoder outputs of the task's queries and candidates from ``table``."""
        self.use_encoder_outputs(table.rows_of(self.task.queries), table.rows_of(self.task.candidates))

    def score(self, model: Any, heads: bool = True) -> dict[str, float]:
        """Metrics of a SimilarityModel (or TrainableModel); ``heads=False``: the encoders alone."""
        return super().score(model if hasattr(model, "apply_heads") else getattr(model, "model", model), heads)


class EncoderOutputs:
    """Frozen encoders' outputs for a fixed set of objects, computed once. Objects are found by
    identity (the very objects of the samples read for the job), so any object type works."""

    def __init__(self, model: Any, objects: Sequence[Any], batch_size: int = 32, save_dir: str | None = None):
        self.model = getattr(model, "model", model)
        unique: list[Any] = []
        self.row: dict[int, int] = {}
        for obj in objects:
            if id(obj) not in self.row:
                self.row[id(obj)] = len(unique)
                unique.append(obj)
        self.objects = unique  # keeps the objects alive, so their ids stay theirs
        self.batch_size = batch_size
        self.outcome = "encoded"
        path = None
        if save_dir is not None and unique:
            path = os.path.join(save_dir, f"tune-{self.fingerprint()[:32]}.safetensors")
        loaded = load_outputs(path, len(unique)) if path is not None else None
        if loaded is not None:
            self.outputs, self.outcome = loaded, f"reused {path}"
        else:
            self.outputs = self.model.encoder_outputs(unique, batch_size) if unique else torch.empty(0)
            if path is not None:
                save_outputs(path, self.outputs)
                self.outcome = f"encoded, kept in {path}"
        sizes = [e.embedding_size for e in self.model.encoders.values()]
        self.by_encoder = dict(zip(self.model.encoders, self.outputs.split(sizes, dim=1))) if unique else {}

    def fingerprint(self) -> str:
        """The encoders (plugin, config, weights) and the objects' content, in order."""
        h = hashlib.sha256()
        for key, encoder in self.model.encoders.items():
            h.update(repr((key, sorted(encoder_fingerprint(encoder, torch.float32).items()))).encode())
        h.update(f"objects={len(self.objects)};batch={self.batch_size};".encode())
        for obj in self.objects:
            update_content_digest(h, obj)
        return h.hexdigest()

    def rows_of(self, objects: Sequence[Any], encoder: str | None = None) -> torch.Tensor:
        table = self.outputs if encoder is None else self.by_encoder[encoder]
        missing = [o for o in objects if id(o) not in self.row]
        if missing:  # not among the objects given at first: encode them now
            extra = self.model.encoder_outputs(missing, self.batch_size)
            full = {id(o): e for o, e in zip(missing, extra)}
            if encoder is not None:
                start = 0
                for key, enc in self.model.encoders.items():
                    if key == encoder:
                        break
                    start += enc.embedding_size
                full = {k: v[start:start + table.shape[1]] for k, v in full.items()}
            return torch.stack([table[self.row[id(o)]] if id(o) in self.row else full[id(o)] for o in objects])
        return table[torch.tensor([self.row[id(o)] for o in objects], dtype=torch.long)]

    def lookup_encoders(self) -> dict[str, Encoder]:
        """Stand-ins for the frozen encoders that return their stored outputs: a cache filled
        through them holds the very rows the encoders gave, without running the encoders."""
        return {key: StoredOutputsEncoder(self, key) for key in self.model.encoders}


def save_outputs(path: str, outputs: torch.Tensor) -> None:
    """Write encoder outputs atomically, with the digest of their bytes in the file's metadata."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = outputs.contiguous()
    digest = hashlib.sha256(data.numpy().tobytes()).hexdigest()
    write_bytes_atomic(path, save_safetensors({"outputs": data}, metadata={"sha256": digest}))


def load_outputs(path: str, rows: int) -> torch.Tensor | None:
    """Stored outputs, or ``None`` when the file is missing; a damaged file is named and not used."""
    if not os.path.exists(path):
        return None
    try:
        with safe_open(path, framework="pt") as fh:
            digest = (fh.metadata() or {}).get("sha256")
            data = fh.get_tensor("outputs")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is encoded again
        warnings.warn(f"ignoring the stored encoder outputs {path}: unreadable ({type(exc).__name__}: {exc}); encoding again", stacklevel=2)
        return None
    if data.dim() != 2 or data.shape[0] != rows or hashlib.sha256(data.contiguous().numpy().tobytes()).hexdigest() != digest:
        warnings.warn(f"ignoring the stored encoder outputs {path}: its rows do not match their checksum or the data; encoding again",
                      stacklevel=2)
        return None
    return data


class StoredOutputsEncoder(Encoder):
    """An encoder whose "forward" looks up the stored outputs of a real one (see EncoderOutputs)."""

    def __init__(self, outputs: EncoderOutputs, key: str):
        super().__init__()
        self._outputs = outputs
        self._key = key

    @property
    def trainable(self) -> bool:
        return False

    @property
    def embedding_size(self) -> int:
        return int(self._outputs.by_encoder[self._key].shape[1])

    def get_collate_fn(self) -> Callable[[list[Any]], Any]:
        return list

    def forward(self, batch: Any) -> torch.Tensor:
        return self._outputs.rows_of(batch, self._key)


class PrefilledCache(pl.Callback):
    """Fills a trial model's cache from stored encoder outputs before the model's own fill runs
    (callbacks' ``on_fit_start`` runs before the LightningModule's): every trial trains from the
    one encoder pass."""

    def __init__(self, outputs: EncoderOutputs):
        self.encoders = outputs.lookup_encoders()

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        state = pl_module.cache_state
        if state is not None and not state.filled:
            state.fill(self.encoders, pl_module.device, False)


# ---------------------------------------------------------------------------- best epoch
@dataclass
class EpochChoice:
    epoch: int
    metrics: dict[str, float]
    feasible: bool


SCORES_PER_RUN = 50  # best-epoch selection scores about this many epochs of a long run


def scoring_interval(max_epochs: int | None, every: int | None = None) -> int:
    """Epochs between two scorings of the validation split: ``every`` when given, else one epoch
    for runs of up to ``SCORES_PER_RUN`` epochs and ``ceil(max_epochs / SCORES_PER_RUN)`` beyond
    (every 3rd epoch of 150). A score costs a head pass over the split and its candidates plus a
    ranking, which for a wide head is about half an epoch of training; a choice to within a few
    epochs of a long run loses nothing, since its objective moves slowly there."""
    if every is not None:
        return every
    return max(1, math.ceil(max_epochs / SCORES_PER_RUN)) if max_epochs and max_epochs > 0 else 1


def checked_interval(value: Any, where: str) -> int | None:
    """A configured number of epochs between scorings; None: :func:`scoring_interval` decides."""
    return None if value is None else positive_int(value, where, why="epochs between scorings; 1 scores after every epoch")


class BestEpoch(pl.Callback):
    """Scores the model on a validation task after every ``every``-th epoch and the last (see
    :func:`scoring_interval`; by default every epoch of a run of up to 50), keeps the trainable
    weights of the best scored epoch (the best ``objective`` among epochs meeting the
    constraints; when none does, the one that misses them least), and puts them back when
    training ends.

    ``report(epoch, value)`` is called with the best value so far after every epoch; when it
    returns True, training stops (a pruned trial). With ``patience``, training also stops when
    the choice has not changed for that many epochs (the later epochs could only be chosen by
    beating it; a config that reruns the trial trains for the epochs it ran). With ``deadline``
    (a ``time.monotonic()`` value), training stops after the first epoch that ends past it (that
    epoch is scored), and the best epoch so far stands (``stopped_at_deadline``)."""

    def __init__(self, score: Callable[[Any], dict[str, float]], objective: str,
                 constraints: Sequence[Constraint] = (), untrained: Mapping[str, float] | None = None,
                 report: Callable[[int, float], bool] | None = None, restore: bool = True,
                 patience: int | None = None, deadline: float | None = None, every: int | None = None):
        self.every = every
        self.score = score
        self.objective = objective
        self.constraints = list(constraints)
        self.untrained = dict(untrained or {})
        self.report = report
        self.restore = restore
        self.patience = patience
        self.deadline = deadline
        self.stopped_at_deadline = False
        self.history: list[dict[str, float]] = []  # the scored epochs
        self.epochs_run = 0
        self.interval = every or 1  # epochs between scorings, from the trainer's max_epochs at each epoch's end
        self.best: EpochChoice | None = None
        self.pruned = False
        self._best_key: tuple[float, float] | None = None
        self._state: dict[str, torch.Tensor] | None = None

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = self.epochs_run = trainer.current_epoch + 1
        last = getattr(trainer, "max_epochs", None)
        past_deadline = self.deadline is not None and time.monotonic() >= self.deadline
        self.interval = scoring_interval(last, self.every)
        if epoch % self.interval == 0 or epoch == last or past_deadline:
            self._score_epoch(epoch, pl_module)
        if self.report is not None and self.best is not None and self.report(epoch, self.best.metrics[self.objective]):
            self.pruned = True
            trainer.should_stop = True
        if self.patience and self.best is not None and epoch - self.best.epoch >= self.patience:
            trainer.should_stop = True
        if past_deadline and not trainer.should_stop:
            self.stopped_at_deadline = True
            trainer.should_stop = True

    def _score_epoch(self, epoch: int, pl_module: Any) -> None:
        metrics = self.score(pl_module)
        if self.objective not in metrics:
            raise ConfigError(f"the objective {self.objective!r} is not a reported metric; the metrics are: {', '.join(metrics)}")
        self.history.append({"epoch": epoch, **metrics})
        missed = total_violation(self.constraints, metrics, self.untrained)
        key = (-missed, metrics[self.objective])
        if self._best_key is None or key > self._best_key:
            self._best_key = key
            self.best = EpochChoice(epoch, dict(metrics), missed == 0)
            self._state = trainable_state(pl_module.model) if self.restore else None

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._state is not None and not self.pruned:
            pl_module.model.load_state_dict(self._state, strict=False)

    def summary(self) -> str:
        if self.best is None:
            return "best epoch: none scored"
        last = self.epochs_run
        met = "" if not self.constraints else (" (meets the constraints)" if self.best.feasible else " (no epoch met the constraints; the closest)")
        return f"best epoch {self.best.epoch} of {last} on the validation split: {self.objective} {self.best.metrics[self.objective]:.3f}{met}"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights that training changes (not those of frozen encoders)."""
    frozen: set[int] = set()
    for encoder in getattr(model, "encoders", {}).values():
        if not encoder.trainable:
            frozen.update(id(t) for t in encoder.parameters())
            frozen.update(id(t) for t in encoder.buffers())
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items() if id(v) not in frozen}


def select_best_settings(select_best: Any, headline: str) -> tuple[str, list[str], int | None]:
    """``[train] select_best``: ``true`` (the headline metric), a metric name, or a table
    ``{metric = "...", constraints = ["retrieval_precision@1 >= untrained", ...], every = 1}``
    (``every``: epochs between scorings; default :func:`scoring_interval`)."""
    if select_best is True:
        return headline, [], None
    if isinstance(select_best, str):
        return select_best, [], None
    if isinstance(select_best, Mapping):
        unknown = sorted(set(select_best) - {"metric", "constraints", "every"})
        if unknown:
            raise ConfigError(f"[train] select_best has unknown key(s) {', '.join(unknown)}; the keys are: constraints, every, metric")
        constraints = select_best.get("constraints", [])
        if not isinstance(constraints, list):
            raise ConfigError(f"[train] select_best constraints is a list of strings, got {constraints!r}")
        every = checked_interval(select_best.get("every"), "[train] select_best every")
        return str(select_best.get("metric", headline)), constraints, every
    raise ConfigError(f"[train] select_best is true, a metric name, or {{metric = \"...\", constraints = [...]}}; got {select_best!r}")


def best_epoch_selector(kind: str, train: Sequence[Any], model: Any, select_best: Any, headline: str,
                        share: float, seed: int, evaluate: Mapping[str, Any]) -> tuple[list[Any], BestEpoch]:
    """For ``[train] select_best``: the samples to train on (the training data minus a carved
    validation split) and the callback that picks the epoch on that split."""
    metric, constraint_specs, every = select_best_settings(select_best, headline)
    fit_samples, validation = carve_validation(train, kind, share, seed)
    task = EmbeddedTask(kind, validation, fit_samples, evaluate.get("distance", "cosine"), evaluate.get("ks", (1, 5, 10)))
    untrained = task.score(model, heads=False)
    if metric not in untrained:
        raise ConfigError(f"[train] select_best metric {metric!r} is not reported; the metrics are: {', '.join(untrained)}")
    constraints = parse_constraints(constraint_specs, list(untrained))
    return fit_samples, BestEpoch(task.score, metric, constraints, untrained, every=every)


# ---------------------------------------------------------------------------- trials and the front
def pareto_front(rows: Sequence[Mapping[str, float]], metrics: Sequence[str]) -> list[int]:
    """Positions of the rows no other row dominates (at least as high on every metric, higher
    on one)."""
    front = []
    for i, row in enumerate(rows):
        dominated = any(
            all(other[m] >= row[m] for m in metrics) and any(other[m] > row[m] for m in metrics)
            for j, other in enumerate(rows) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def fingerprint(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


FINGERPRINT_ATTR = "simplug_fingerprint"
PARTS_ATTR = "simplug_config_parts"


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("simplug tune runs on Optuna: pip install 'simplug[tune]'") from None
    return optuna


def trial_seeded_sampler(make: Callable[[int], Any], seed: int) -> Any:
    """An Optuna sampler that draws each trial's values from ``make(s)``, a sampler built with a
    seed ``s`` derived from ``seed`` and the trial's number.

    One sampler seeded once per process would draw the same values again in every process that
    opens the study with the same seed: a resumed or extended run would repeat the first run's
    random trials, and two processes sharing a study would run the same trials twice. Trial
    numbers are unique within a study, across processes, so seeding by them keeps a run
    reproducible and makes every trial's draw its own."""
    optuna = require_optuna()

    class TrialSeededSampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.current = make(seed)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.current = make((seed * 1_000_003 + trial.number) % 2**32)
            self.current.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.current.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self.current.sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            return self.current.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.current.after_trial(study, trial, state, values)

    return TrialSeededSampler()


def storage_for(url: str) -> Any:
    """Optuna storage for a database URL. SQLite waits for a lock instead of failing at once
    when several processes write trials to one file; heartbeats let a run find trials left
    RUNNING by a killed process and mark them failed."""
    optuna = require_optuna()
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=10, grace_period=60)
    except Exception as exc:  # noqa: BLE001 - the URL, driver or file is the user's
        raise ConfigError(f"cannot open the study database {url!r}: {type(exc).__name__}: {exc}") from None


def open_study(storage_url: str, study_name: str, parts: Mapping[str, Any], sampler: Any, pruner: Any) -> Any:
    """Create the study, or resume it when it was made from the same config (``parts``: the
    config sections that decide what a trial means). A study of another config is refused."""
    with _creation_lock(storage_url):
        return _open_study(storage_url, study_name, parts, sampler, pruner)


def _creation_lock(url: str) -> Any:
    """Processes that start at once on one new SQLite file would race to create its tables (an
    IntegrityError in one of them): they take turns through a lock file beside it."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        return nullcontext()
    path = url[len(prefix):]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return FileLock(path + ".lock", timeout=300)


def _open_study(storage_url: str, study_name: str, parts: Mapping[str, Any], sampler: Any, pruner: Any) -> Any:
    optuna = require_optuna()
    storage = storage_for(storage_url)
    wanted = fingerprint(parts)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    attrs = study.user_attrs
    if FINGERPRINT_ATTR not in attrs:
        if study.trials:
            raise ConfigError(f"the study {study_name!r} in {storage_url} was not made by simplug tune; "
                              "pick another study_name or database")
        study.set_user_attr(FINGERPRINT_ATTR, wanted)
        study.set_user_attr(PARTS_ATTR, json.loads(json.dumps(parts, default=repr)))
    elif attrs[FINGERPRINT_ATTR] != wanted:
        old = attrs.get(PARTS_ATTR, {})
        new = json.loads(json.dumps(parts, default=repr))
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)) or ["(unknown)"]
        raise ConfigError(
            f"the study {study_name!r} in {storage_url} was made from another config (it differs in: "
            f"{', '.join(differ)}), so its trials do not compare with this one's; write to another "
            "folder (--out), name another study ([tune] study_name), or delete the study file to start over"
        )
    try:
        fail_stale = optuna.storages.fail_stale_trials
    except AttributeError:  # pragma: no cover - older Optuna
        fail_stale = None
    if fail_stale is not None:  # trials a killed process left RUNNING count as failed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale(study)
    return study
