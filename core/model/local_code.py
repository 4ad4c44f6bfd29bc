"""Classes defined in user code (a script, a notebook) that no plugin registered.

Saving records their source, with the imports and the local helpers they use (found from
the names the source refers to), never the body of the user's script. Loading executes
that source, so it happens only with ``trust_local_code=True``.
"""
from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import os
import sys
import textwrap
import types
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

from simplug.errors import ModelFormatError, UntrustedCodeError
from simplug.files import checked_relative_path, read_model_file

LOCAL_CODE_DIR = "local_code"
_SIMPLE = (int, float, str, bool, bytes, type(None))


def _is_simple_constant(value: Any) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (tuple, list, frozenset)):
        return all(_is_simple_constant(v) for v in value)
    if isinstance(value, dict):
        return all(_is_simple_constant(k) and _is_simple_constant(v) for k, v in value.items())
    return False


def _referenced_names(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in names:
            names.append(node.id)
    return names


def collect_source(cls: type) -> str:
    """Source text that defines ``cls`` when executed in an empty module."""
    module = sys.modules.get(cls.__module__)
    if module is None:
        raise ModelFormatError(f"cannot save {cls.__qualname__}: its module {cls.__module__} is gone")
    namespace = vars(module)
    imports: list[str] = []
    pieces: list[str] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        try:
            source = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError) as exc:
            raise ModelFormatError(
                f"cannot save {cls.__qualname__} as local code: the source of {obj.__qualname__} "
                f"is not available ({exc}). Define it in a file or notebook cell, or register it "
                "through a plugin"
            ) from exc
        for name in _referenced_names(ast.parse(source)):
            if name not in namespace or hasattr(builtins, name) and namespace[name] is getattr(builtins, name):
                continue
            value = namespace[name]
            if isinstance(value, types.ModuleType):
                line = f"import {value.__name__}" if value.__name__ == name else f"import {value.__name__} as {name}"
            elif (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == cls.__module__:
                visit(value)
                continue
            elif inspect.isclass(value) or inspect.isfunction(value) or callable(value) and hasattr(value, "__qualname__"):
                qualname = value.__qualname__
                if "." in qualname or "<" in qualname:
                    continue
                line = f"from {value.__module__} import {qualname}" + ("" if qualname == name else f" as {name}")
            elif _is_simple_constant(value):
                pieces.append(f"{name} = {value!r}\n")
                continue
            else:
                continue
            if line not in imports:
                imports.append(line)
        pieces.append(source)

    visit(cls)
    header = f"# local code saved by simplug from module {cls.__module__!r}\n"
    return header + "\n".join(imports) + "\n\n\n" + "\n\n".join(pieces)


class LocalCodeWriter:
    """Collects the local classes a saved model needs, one file per user module."""

    def __init__(self) -> None:
        self._files: dict[str, dict[str, Any]] = {}

    def add(self, cls: type) -> str:
        """Record ``cls`` and return its reference, ``"local_code/<file>.py:<qualname>"``."""
        if "<locals>" in cls.__qualname__:
            raise ModelFormatError(
                f"cannot save {cls.__qualname__}: classes defined inside a function cannot be "
                "rebuilt; define it at the top level of your script or notebook"
            )
        source = collect_source(cls)
        digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        stem = cls.__module__.replace(".", "_").strip("_") or "main"
        filename = f"{LOCAL_CODE_DIR}/{stem}_{cls.__name__}_{digest}.py"
        self._files[filename] = {"source": source, "qualname": cls.__qualname__, "module": cls.__module__}
        return f"{filename}:{cls.__qualname__}"

    def write(self, directory: str) -> list[dict[str, str]]:
        entries = []
        for filename, info in sorted(self._files.items()):
            path = os.path.join(directory, filename)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(info["source"])
            entries.append({"file": filename, "class": info["qualname"], "origin_module": info["module"]})
        return entries


class LocalCodeLoader:
    """Executes saved local code on demand. Exists only when the user trusts the model."""

    def __init__(self, directory: str):
        self.directory = directory
        self._modules: dict[str, types.ModuleType] = {}

    def resolve(self, ref: str) -> type:
        filename, _, qualname = ref.rpartition(":")
        try:
            checked_relative_path(filename, "local code file")
        except ValueError as exc:
            raise ModelFormatError(f"invalid local code reference {ref!r}: {exc}") from None
        if not filename.startswith(LOCAL_CODE_DIR + "/") or not filename.endswith(".py"):
            raise ModelFormatError(f"invalid local code reference {ref!r}: not a {LOCAL_CODE_DIR}/*.py file")
        if not all(part.isidentifier() for part in qualname.split(".")):
            raise ModelFormatError(f"invalid local code reference {ref!r}: {qualname!r} is not a class name")
        module = self._modules.get(filename)
        if module is None:
            path = os.path.join(self.directory, filename)
            # through the model's checked reader: listed in the manifest, inside the model, intact
            source = read_model_file(path, "local code").decode("utf-8")
            name = "simplug_local_code." + os.path.basename(filename)[:-3]
            module = types.ModuleType(name)
            module.__file__ = path
            sys.modules[name] = module  # dataclasses and pickling look classes up here
            exec(compile(source, path, "exec"), module.__dict__)
            self._modules[filename] = module
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise ModelFormatError(f"local code {filename} defines no {qualname!r}; the model is damaged: save it again")
        return obj


_writer: ContextVar[LocalCodeWriter | None] = ContextVar("simplug_local_writer", default=None)
_loader: ContextVar[LocalCodeLoader | None] = ContextVar("simplug_local_loader", default=None)
_untrusted_model: ContextVar[str] = ContextVar("simplug_untrusted_model", default="")


@contextmanager
def saving_local_code(writer: LocalCodeWriter) -> Iterator[LocalCodeWriter]:
    token = _writer.set(writer)
    try:
        yield writer
    finally:
        _writer.reset(token)


@contextmanager
def loading_local_code(loader: LocalCodeLoader | None, model_path: str = "") -> Iterator[None]:
    token = _loader.set(loader)
    token2 = _untrusted_model.set(model_path)
    try:
        yield
    finally:
        _loader.reset(token)
        _untrusted_model.reset(token2)


def local_class_ref(cls: type) -> str:
    """Reference to ``cls`` in the model being saved (only valid inside ``save_servable``)."""
    writer = _writer.get()
    if writer is None:
        raise ModelFormatError(
            f"{cls.__qualname__} is local code; it can only be recorded while saving a model"
        )
    return writer.add(cls)


def resolve_local_ref(ref: str) -> type:
    loader = _loader.get()
    if loader is None:
        where = _untrusted_model.get() or "this model"
        raise UntrustedCodeError(
            f"{where} contains local code ({ref}) that would run on load. Read it, and if you "
            "trust it load with trust_local_code=True (CLI: --trust-local-code)"
        )
    return loader.resolve(ref)
