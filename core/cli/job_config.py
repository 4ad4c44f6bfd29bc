"""The job file of ``simplug train``: sections, keys and paths relative to the file.

Every value is checked by type and range here, when the file is read, before any data or model
work: a bad value is an error naming the file, the section and key, the value and what is
allowed. The sections ``[data]``, ``[train]``, ``[evaluate]`` and ``[output]`` are pydantic
models in strict mode (``epochs = 2.7`` or ``epochs = "3"`` is refused, never truncated or
parsed); ``[model]`` is checked by ``TrainableModel.from_config`` (only its optimizer's ``lr`` is
checked here, so a typo there fails before the data is read); ``[tune]`` is a free-form table.
"""
from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Annotated, Any, Iterable, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from simplug.errors import ConfigError

HEADLINE = {"groups": "retrieval_r_precision", "pairs": "retrieval_precision@1"}

# what is allowed, said once per kind of value: the error messages quote these
_WHOLE = "a whole number"
PositiveInt = Annotated[int, Field(ge=1, description=f"{_WHOLE} >= 1")]
NonNegativeInt = Annotated[int, Field(ge=0, description=f"{_WHOLE} >= 0 (0 turns it off)")]
Text = Annotated[str, Field(min_length=1, description="a non-empty string")]


class _Section(BaseModel):
    """A table of the job file: unknown keys and values of the wrong type are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


class DataSection(_Section):
    kind: Literal["pairs", "groups"] = Field(description='"pairs" or "groups"')
    train: Text = Field(description='a path, e.g. train = "data/train.jsonl" (.jsonl or .csv)')
    validation: Text = Field(description='a path, e.g. validation = "data/validation.jsonl" (.jsonl or .csv)')
    fields: Optional[dict[str, str]] = Field(
        None, description='a table of column names, e.g. fields = {obj = "text", group = "category"}')


class TrainSection(_Section):
    epochs: PositiveInt = Field(10, description=f"{_WHOLE} >= 1, e.g. epochs = 10")
    batch_size: PositiveInt = Field(64, description=f"{_WHOLE} >= 1, e.g. batch_size = 64")
    seed: int = Field(0, ge=0, le=2**32 - 1, description=f"{_WHOLE} from 0 to 4294967295")
    m_per_group: Optional[int] = Field(
        None, ge=2, description=f"{_WHOLE} >= 2 (a balanced batch needs two items of each group)")
    group_sampling: Literal["uniform", "proportional"] = Field("uniform", description='"uniform" or "proportional"')
    cache: str | bool = Field("auto", description='"auto", "none", false, or a cache backend name, e.g. "memory"')
    cache_dir: Optional[Text] = Field(None, description='a directory path, e.g. cache_dir = "cache"')
    num_workers: NonNegativeInt = Field(0, description=f"{_WHOLE} >= 0 (0 loads data in the main process)")
    validate_: bool = Field(True, alias="validate", description="true or false")
    early_stopping_patience: NonNegativeInt = Field(0, description=f"{_WHOLE} >= 0 (0 turns early stopping off)")
    accelerator: Text = Field("cpu", description='a Lightning accelerator, e.g. "cpu", "gpu" or "auto"')
    # best-epoch selection on a split carved from the training data; its values are checked there
    select_best: Any = None
    validation_share: float = Field(0.2, gt=0, lt=1, description="a share of the training data, e.g. 0.2")


class EvaluateSection(_Section):
    distance: Text = Field("cosine", description='a registered distance name, e.g. "cosine"')
    ks: list[PositiveInt] = Field([1, 5, 10], min_length=1,
                                  description="a non-empty list of whole numbers >= 1, e.g. ks = [1, 5, 10]")
    metrics: Optional[list[str | dict[str, Any]]] = Field(
        None, description='a list of registered metric names or tables, e.g. metrics = ["map_at_r", {name = "recall", k = 20}]')
    candidates: Literal["train", "self"] = Field("train", description='"train" or "self"')
    batch_size: PositiveInt = Field(64, description=f"{_WHOLE} >= 1, e.g. batch_size = 64")
    headline: Optional[Text] = Field(
        None, description='a metric name, e.g. "retrieval_r_precision" (the default for groups) or '
                          '"retrieval_precision@1" (for pairs)')


class OutputSection(_Section):
    dir: Optional[Text] = Field(None, description='a directory path, e.g. dir = "runs/first"')


_SECTION_MODELS: dict[str, type[_Section] | None] = {
    "data": DataSection,
    "model": None,  # passed to TrainableModel.from_config, which checks its own keys
    "train": TrainSection,
    "evaluate": EvaluateSection,
    "output": OutputSection,
    "tune": None,  # checked by simplug tune (core/training/tuning.py), which knows its keys
}
SECTIONS = {
    name: None if model is None else {f.alias or key for key, f in model.model_fields.items()}
    for name, model in _SECTION_MODELS.items()
}
REQUIRED_SECTIONS = ("data", "model")


@dataclass
class JobConfig:
    path: str
    data: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    tune: dict[str, Any] = field(default_factory=dict)

    def resolve_path(self, value: str) -> str:
        return value if os.path.isabs(value) else os.path.join(os.path.dirname(os.path.abspath(self.path)), value)


def toml_value(value: Any) -> str:
    """A value as it would be written in the job file, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def unknown_keys_problem(section: str, unknown: Sequence[str], keys: Iterable[str]) -> str:
    """``unknown key(s) trails in [tune] (did you mean 'trails' -> 'trials'?); the keys are: ...``"""
    keys = sorted(keys)
    hints = [f"{k!r} -> {close[0]!r}" for k in unknown if (close := difflib.get_close_matches(k, keys, n=1))]
    return (f"unknown key(s) {', '.join(unknown)} in [{section}]" + (f" (did you mean {', '.join(hints)}?)" if hints else "")
            + f"; the keys are: {', '.join(keys)}")


def _problems(section: str, model: type[_Section], error: ValidationError) -> list[str]:
    """One sentence per pydantic error: ``[train] epochs must be ..., got 2.7``."""
    unknown = [str(e["loc"][0]) for e in error.errors() if e["type"] == "extra_forbidden"]
    problems = []
    if unknown:
        problems.append(unknown_keys_problem(section, unknown, SECTIONS[section] or ()))
    fields_by_alias = {f.alias or name: f for name, f in model.model_fields.items()}
    for e in error.errors():
        if e["type"] == "extra_forbidden":
            continue
        key = str(e["loc"][0])
        where = key + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"][1:])
        info = fields_by_alias.get(key)
        described = info.description if info is not None and info.description else ""
        said = e["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
        if e["type"] == "missing":
            problems.append(f"[{section}] needs {key}: {described or said}")
        elif len(e["loc"]) > 1:  # an item of a list or table: pydantic's words, and what the key holds
            problems.append(f"[{section}] {where} must be {said}, got {toml_value(e['input'])}"
                            + (f" ({key}: {described})" if described else ""))
        else:
            problems.append(f"[{section}] {where} must be {described or said}, got {toml_value(e['input'])}")
    return problems


def check_optimizer(optimizer: Any, where: str = "[model] optimizer") -> None:
    """The optimizer's learning rate, when given, is a positive finite number."""
    if not isinstance(optimizer, dict):
        return  # a name alone: TrainableModel.from_config checks it
    for key, value in (("lr", optimizer.get("lr")), ("args.lr", (optimizer.get("args") or {}).get("lr"))):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(
                f"{where}.{key} must be a positive finite number, e.g. lr = 0.001, got {toml_value(value)}"
            )


def load_job_config(path: str) -> JobConfig:
    import tomllib

    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save the config as UTF-8") from None
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; the sections are: {', '.join(SECTIONS)}")
    for name in REQUIRED_SECTIONS:
        if name not in raw:
            raise ConfigError(f"{path}: the config needs a [{name}] section")
    sections: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for name, model in _SECTION_MODELS.items():
        section = raw.get(name, {})
        if not isinstance(section, dict):
            problems.append(f"[{name}] must be a table, got {toml_value(section)}")
            continue
        if model is None:
            sections[name] = section
            continue
        try:
            # only the keys the file sets: the steps keep their own defaults and know what was set
            sections[name] = model.model_validate(section).model_dump(by_alias=True, exclude_unset=True)
        except ValidationError as exc:
            problems.extend(_problems(name, model, exc))
    if "model" in sections:
        try:
            check_optimizer(sections["model"].get("optimizer"))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return JobConfig(path, sections["data"], sections["model"], sections.get("train", {}), sections.get("evaluate", {}),
                     sections.get("output", {}), sections.get("tune", {}))
