from __future__ import annotations

import importlib.util
import inspect
import json
import types

import pytest

from conftest import run_cli, run_python
from simplug import hookimpl
from simplug.errors import AmbiguousComponentError, ComponentNotFoundError, PluginError
from simplug.registry import Registry

BUILTINS = {
    "encoders": {"torch_module"},
    "heads": {"empty", "skip_connection"},
    "losses": {"contrastive", "triplet", "multiple_negatives_ranking"},
    "distances": {"cosine", "euclidean", "manhattan", "dot_product"},
    "metrics": {"retrieval_precision", "retrieval_reciprocal_rank"},
}


def _plugin(kind: str, **components) -> types.ModuleType:
    module = types.ModuleType(f"fake_{kind}_{'_'.join(components)}")

    def hook(register):
        for name, target in components.items():
            register(name, target)

    hook.__name__ = f"register_{kind}"
    setattr(module, f"register_{kind}", hookimpl(hook))
    return module


def test_builtins_register_through_our_own_entry_points():
    registry = Registry()
    for kind, names in BUILTINS.items():
        assert names <= set(registry.names(kind)), kind
    record = registry.get("heads", "skip_connection")
    assert record.distribution == "simplug"
    assert record.entry_point == "simplug.plugins.heads"
    assert record.plugin == "heads"
    assert record.version == __import__("simplug").__version__


def test_targets_are_lazy_until_resolved():
    code = (
        "import sys\n"
        "from simplug.registry import Registry\n"
        "r = Registry()\n"
        "print(len(r.components()), 'torch' in sys.modules, 'simplug.plugins.heads.skip_connection' in sys.modules)\n"
        "r.resolve('heads', 'skip_connection')\n"
        "print('simplug.plugins.heads.skip_connection' in sys.modules)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split("\n")[:2]
    count, torch_loaded, head_loaded = first.split()
    assert int(count) >= 13 and torch_loaded == "False" and head_loaded == "False"
    assert second == "True"


def test_unknown_name_lists_close_matches_and_the_kind():
    registry = Registry()
    with pytest.raises(ComponentNotFoundError) as err:
        registry.get("heads", "skip_conection")
    message = str(err.value)
    assert "skip_connection" in message and "Did you mean" in message and "empty" in message
    with pytest.raises(ComponentNotFoundError, match="kinds are"):
        registry.get("gizmos", "x")


def test_duplicate_names_are_an_error_naming_both_distributions_and_can_be_picked():
    registry = Registry(autoload=False)
    registry.add_plugin(_plugin("heads", twin="simplug.plugins.heads.empty:EmptyHead"), name="one", distribution="dist-one", version="1.0")
    registry.add_plugin(_plugin("heads", twin="simplug.plugins.heads.gated:GatedHead"), name="two", distribution="dist-two", version="2.0")
    with pytest.raises(AmbiguousComponentError) as err:
        registry.get("heads", "twin")
    assert "dist-one" in str(err.value) and "dist-two" in str(err.value)
    assert "distribution:name" in str(err.value)
    assert registry.resolve("heads", "dist-two:twin").__name__ == "GatedHead"
    assert registry.resolve("heads", "dist_one:twin").__name__ == "EmptyHead"  # PEP 503 spelling


def test_a_plugin_that_raises_is_recorded_and_the_rest_keeps_working():
    registry = Registry(autoload=False, strict=False)
    bad = types.ModuleType("bad_plugin")

    def register_losses(register):
        raise RuntimeError("boom in plugin")

    bad.register_losses = hookimpl(register_losses)
    registry.add_plugin(bad, name="bad", distribution="bad-dist", version="0.1")
    registry.add_plugin(_plugin("heads", fine="simplug.plugins.heads.empty:EmptyHead"), name="good", distribution="good-dist")
    info = {p.name: p for p in registry.plugins}
    assert info["bad"].status == "broken" and "boom in plugin" in info["bad"].error
    assert registry.resolve("heads", "fine").__name__ == "EmptyHead"
    strict = Registry(autoload=False, strict=True)
    with pytest.raises(PluginError, match="bad-dist"):
        strict.add_plugin(bad, name="bad", distribution="bad-dist", version="0.1")


def test_a_plugin_implementing_an_unknown_hook_is_reported_with_the_expected_signatures():
    registry = Registry(autoload=False)
    module = types.ModuleType("typo_plugin")

    def register_head(register):  # singular: not a hook
        register("x", "simplug.plugins.heads.empty:EmptyHead")

    module.register_head = hookimpl(register_head)
    info = registry.add_plugin(module, name="typo", distribution="typo-dist")
    assert info.status == "broken"
    assert "register_head" in info.error and "register_heads(register)" in info.error


def test_wrong_hook_arguments_are_reported():
    registry = Registry(autoload=False)
    module = types.ModuleType("argplugin")

    def register_heads(register, extra):
        pass

    module.register_heads = hookimpl(register_heads)
    info = registry.add_plugin(module, name="args", distribution="args-dist")
    assert info.status == "broken" and "extra" in info.error


def test_broken_installed_plugin_in_list_and_strict_mode(broken_plugin_site):
    env = {"PYTHONPATH": str(broken_plugin_site)}
    result = run_cli("list", "--json", env_extra=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    broken = [r for r in rows if r["status"] == "broken"]
    assert broken and broken[0]["distribution"] == "simplug-broken-plugin" and broken[0]["version"] == "1.0.0"
    assert "a_module_that_does_not_exist" in broken[0]["error"]
    assert {r["name"] for r in rows if r["kind"] == "heads"} >= BUILTINS["heads"]

    strict = run_python("from simplug.registry import Registry; Registry()", env_extra={**env, "SIMPLUG_STRICT_PLUGINS": "1"})
    assert strict.returncode != 0
    assert "simplug-broken-plugin" in strict.stderr and "PluginError" in strict.stderr

    disabled = run_cli("list", "--json", env_extra={**env, "SIMPLUG_DISABLE_PLUGINS": "simplug-broken-plugin"})
    statuses = {r["distribution"]: r["status"] for r in json.loads(disabled.stdout) if r["distribution"] != "simplug"}
    assert statuses == {"simplug-broken-plugin": "disabled"}

    only_builtins = run_cli("list", "--json", env_extra={**env, "SIMPLUG_LOAD_PLUGINS": ""})
    rows = json.loads(only_builtins.stdout)
    assert all(r["status"] in ("ok", "disabled") for r in rows)
    assert {r["name"] for r in rows if r["status"] == "ok"} >= BUILTINS["losses"]


def test_a_registered_class_must_subclass_its_kinds_base():
    registry = Registry(autoload=False)
    registry.add_plugin(_plugin("heads", not_a_head="collections:OrderedDict"), name="odd", distribution="odd-dist")
    with pytest.raises(PluginError, match=r"head 'not_a_head' from odd-dist .*OrderedDict, which does not subclass "
                                          r"simplug\.components\.head\.EncoderHead"):
        registry.resolve("heads", "not_a_head")


def test_every_kind_in_the_table_has_a_hook_a_base_and_a_check():
    from simplug.registry import hookspecs, kinds
    from simplug.registry.registry import import_target

    for kind in kinds.KINDS:
        assert callable(getattr(hookspecs, kind.hook))
        if kind.name != "indexes" or importlib.util.find_spec("simplug.components.index"):
            assert inspect.isclass(import_target(kind.base))
            assert callable(import_target(kind.check))


def test_the_docs_and_the_cli_name_every_kind_of_the_table():
    from pathlib import Path

    from simplug.registry import kinds

    docs = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    for kind in kinds.KINDS:
        assert f"`{kind.hook}(register)` | {kind.name.replace('_', ' ')} |" in docs, kind.name
    result = run_cli("new-plugin", "--help")
    for kind in kinds.KINDS:
        assert kind.name in result.stdout
