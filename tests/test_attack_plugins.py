"""Hostile plugins: one that exits, prints, or raises KeyboardInterrupt while it loads is recorded
as broken (or warned about) and never ends the command or corrupts its output; a real Ctrl-C
still stops it; SIMPLUG_STRICT_PLUGINS=1 still raises.

Plugins here are distributions written straight into a directory on ``sys.path`` (a module and
a ``.dist-info`` with its entry point): what ``pip install`` leaves, without the wait.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from conftest import run_cli
from simplug.errors import PluginError
from simplug.registry import Registry

HOOK = """
from simplug import hookimpl

@hookimpl
def register_heads(register):
    {body}
    register("{name}", "collections:OrderedDict")
"""


def make_dist(site: Path, dist: str, module_code: str, extra_modules: dict[str, str] | None = None) -> str:
    """Write distribution ``dist`` whose entry point ``main`` is a module holding ``module_code``."""
    module = dist.replace("-", "_")
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(module_code), encoding="utf-8")
    for name, code in (extra_modules or {}).items():
        (site / f"{name}.py").write_text(textwrap.dedent(code), encoding="utf-8")
    info = site / f"{module}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[simplug]\nmain = {module}\n", encoding="utf-8")
    return module


def hook_module(name: str, body: str = "pass", before: str = "") -> str:
    return textwrap.dedent(before) + HOOK.format(body=body, name=name)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh site directory on sys.path; modules the test imports from it are forgotten after."""
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    before = set(sys.modules)
    yield directory
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and str(directory) in (sys.modules[name].__file__ or ""):
            del sys.modules[name]


def plugin(registry: Registry, dist: str):
    (info,) = [p for p in registry.plugins if p.distribution == dist]
    return info


MISBEHAVIOURS = {
    # name: (module code, words of the recorded error)
    "import-exits-0": ("import sys\nsys.exit(0)\n", "import of 'import_exits_0' called sys.exit(0)"),
    "import-exits-3": ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
    "import-exits-text": ("raise SystemExit('bye')\n", "called sys.exit('bye')"),
    "import-raises-ctrl-c": ("raise KeyboardInterrupt\n", "raised KeyboardInterrupt itself (no Ctrl-C was pressed)"),
    "import-raises-base": ("class Odd(BaseException): pass\nraise Odd('odd')\n", "raised Odd: odd"),
    "hook-exits": (hook_module("h1", "import sys; sys.exit(0)"), "register_heads called sys.exit(0)"),
    "hook-raises-ctrl-c": (hook_module("h2", "raise KeyboardInterrupt"), "register_heads raised KeyboardInterrupt itself"),
}


@pytest.mark.parametrize("dist", sorted(MISBEHAVIOURS))
def test_a_plugin_that_exits_or_interrupts_is_broken_and_the_rest_loads(site, dist):
    code, words = MISBEHAVIOURS[dist]
    make_dist(site, dist, code)
    make_dist(site, f"good-{dist}", hook_module("good_head"))
    registry = Registry()
    info = plugin(registry, dist)
    assert info.status == "broken" and words in info.error
    assert plugin(registry, f"good-{dist}").status == "ok"
    assert registry.get("heads", "good_head").distribution == f"good-{dist}"
    assert "skip_connection" in registry.names("heads")  # the built-ins are unaffected


@pytest.mark.parametrize("dist", sorted(MISBEHAVIOURS))
def test_strict_mode_raises_for_each_misbehaviour(site, dist, monkeypatch):
    code, words = MISBEHAVIOURS[dist]
    make_dist(site, dist, code)
    monkeypatch.setenv("SIMPLUG_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=f"from {dist} 1.0 is broken: .*{re.escape(words)}"):
        Registry()


def test_sigint_handler_is_left_as_it_was(site):
    make_dist(site, "exits-again", "import sys\nsys.exit(0)\n")
    before = signal.getsignal(signal.SIGINT)
    Registry()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("where", ["import", "hook"])
def test_printing_plugins_keep_stdout_clean_and_are_warned_about(site, capfd, caplog, where):
    code = ("print('hello from the plugin')\n" + hook_module("printed")) if where == "import" else \
        hook_module("printed", "print('hello from the plugin')")
    make_dist(site, f"printer-{where}", code)
    with caplog.at_level(logging.WARNING, logger="simplug.registry"):
        registry = Registry()
    out, _ = capfd.readouterr()
    assert "hello" not in out
    assert plugin(registry, f"printer-{where}").status == "ok"  # printing is rude, not broken
    assert registry.get("heads", "printed")
    assert any("wrote to standard output while loading" in r.getMessage() and "hello from the plugin" in r.getMessage()
               for r in caplog.records)


def test_writes_to_file_descriptor_1_go_to_stderr(site, capfd):
    make_dist(site, "raw-writer", "import os\nos.write(1, b'raw bytes from the plugin\\n')\n" + hook_module("raw"))
    Registry()
    out, err = capfd.readouterr()
    assert "raw bytes" not in out and "raw bytes from the plugin" in err


def test_a_lazy_target_that_exits_fails_to_resolve_with_a_plugin_error(site):
    make_dist(site, "lazy-exit", """
        from simplug import hookimpl

        @hookimpl
        def register_heads(register):
            register("lazy_exit", "lazy_exit_impl:Head")
    """, {"lazy_exit_impl": "import sys\nsys.exit(2)\n"})
    registry = Registry()
    with pytest.raises(PluginError, match=r"head 'lazy_exit' from lazy-exit 1.0 could not be imported "
                                          r"\(lazy_exit_impl:Head\): its import called sys.exit\(2\)"):
        registry.resolve("heads", "lazy_exit")


def test_a_real_ctrl_c_during_a_plugin_import_stops_discovery(site):
    make_dist(site, "presses-ctrl-c", "import signal\nsignal.raise_signal(signal.SIGINT)\n")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        Registry()
    assert signal.getsignal(signal.SIGINT) is before


def test_a_real_ctrl_c_that_a_plugin_swallows_still_stops_discovery(site):
    make_dist(site, "swallows-ctrl-c", """
        import signal
        try:
            signal.raise_signal(signal.SIGINT)
        except BaseException:
            pass
    """)
    with pytest.raises(KeyboardInterrupt):
        Registry()


def test_a_keyboard_interrupt_raised_in_another_thread_is_the_plugins(site):
    make_dist(site, "thread-ctrl-c", "raise KeyboardInterrupt\n")
    found = {}
    worker = threading.Thread(target=lambda: found.setdefault("registry", Registry()))
    worker.start()
    worker.join()
    assert plugin(found["registry"], "thread-ctrl-c").status == "broken"


# ------------------------------------------------------------------ the command line
def cli_env(site: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **extra}


def test_list_json_stays_valid_with_exiting_printing_and_interrupting_plugins(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "exit-plugin", "import sys\nsys.exit(0)\n")
    make_dist(site, "print-plugin", "print('not JSON')\n" + hook_module("chatty"))
    make_dist(site, "ctrl-c-plugin", "raise KeyboardInterrupt\n")
    result = run_cli("list", "--json", env_extra=cli_env(site))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    status = {r["distribution"]: r["status"] for r in rows if r["distribution"] != "simplug"}
    assert status == {"exit-plugin": "broken", "print-plugin": "ok", "ctrl-c-plugin": "broken"}
    assert any(r["name"] == "chatty" for r in rows)
    assert "not JSON" in result.stderr


def test_list_stops_with_130_on_a_real_ctrl_c(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "presses-ctrl-c", "import signal\nsignal.raise_signal(signal.SIGINT)\n")
    result = run_cli("list", "--json", env_extra=cli_env(site))
    assert result.returncode == 130
    assert result.stdout == "" and "interrupted (Ctrl-C) while loading plugins" in result.stderr


def test_list_in_strict_mode_fails_naming_the_exit(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "exit-plugin", "import sys\nsys.exit(0)\n")
    result = run_cli("list", "--json", env_extra=cli_env(site, SIMPLUG_STRICT_PLUGINS="1"))
    assert result.returncode == 1 and result.stdout == ""
    assert "plugin 'main' from exit-plugin 1.0 is broken: import of 'exit_plugin' called sys.exit(0)" in result.stderr


def test_training_goes_on_past_a_plugin_that_exits_and_saves_its_model(site, tmp_path, fresh_registry):
    from simplug.cli.train_job import run_training
    from test_jobs import make_group_job

    make_dist(site, "exits-on-import", "import sys\nsys.exit(0)\n")
    job = make_group_job(tmp_path, loss='{name = "triplet", mining = "all", margin = 0.5}')
    report = run_training(str(job), epochs=1, echo=lambda _: None)
    assert os.path.isfile(os.path.join(report["model"], "manifest.json"))
    from simplug.registry import get_registry

    assert plugin(get_registry(), "exits-on-import").status == "broken"
