"""The ``simplug`` command. Listing and reading manifests import no torch."""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from simplug.cli.tables import format_comparison, text_table
from simplug.errors import SimplugError
from simplug.registry.kinds import NAMES as KIND_NAMES

app = typer.Typer(
    name="simplug",
    help="Fine-tune similarity-learning models from pluggable components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _printable(value: object) -> str:
    """``value`` as text safe for a terminal: control characters (ANSI escapes, carriage returns,
    bidirectional overrides) from a model file are shown escaped, never sent to the terminal."""
    text = value if isinstance(value, str) else str(value)
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _read_manifest(model: str) -> dict:
    from simplug.model.manifest import read_manifest

    try:
        return read_manifest(model, verify_files=False)
    except SimplugError as exc:
        _fail(_printable(exc))
        raise  # unreachable: _fail exits


@app.command("list")
def list_components(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="only this kind (heads, losses, ...)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    hooks: bool = typer.Option(False, "--hooks", help="list plugins and the hooks each implements"),
) -> None:
    """List installed components and the plugins that provide them."""
    from simplug.registry import Registry, normalize_kind

    try:
        registry = Registry()
        wanted = normalize_kind(kind) if kind else None
    except SimplugError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # a real Ctrl-C (a plugin's own KeyboardInterrupt makes it broken)
        _fail("interrupted (Ctrl-C) while loading plugins; nothing was listed", INTERRUPTED)
    if hooks:
        plugins = [
            {"plugin": p.name, "module": p.module, "distribution": p.distribution, "version": p.version,
             "status": p.status, "hooks": p.hooks, "error": p.error}
            for p in registry.plugins
        ]
        if as_json:
            typer.echo(json.dumps(plugins, indent=2))
        else:
            headers = ["plugin", "distribution", "version", "status", "hooks"]
            typer.echo(text_table(headers, [[p["plugin"], p["distribution"], p["version"], p["status"],
                                         ", ".join(p["hooks"]) or "-"] for p in plugins]))
        return
    rows = []
    for record in registry.components(wanted):
        rows.append({**record.as_dict(), "status": "ok"})
    for plugin in registry.plugins:
        if plugin.status != "ok":
            rows.append(
                {
                    "kind": "-",
                    "name": "-",
                    "plugin": plugin.name,
                    "entry_point": plugin.module,
                    "distribution": plugin.distribution,
                    "version": plugin.version,
                    "status": plugin.status,
                    "error": plugin.error,
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    headers = ["kind", "name", "plugin", "distribution", "version", "status"]
    table_rows = [[str(r[h]) for h in headers] for r in rows]
    typer.echo(text_table(headers, table_rows))
    for r in rows:
        if r["status"] == "broken":
            typer.echo(f"\n{r['plugin']} ({r['distribution']} {r['version']}) is broken: {r['error']}", err=True)


@app.command()
def info(
    model: str = typer.Argument(..., help="saved model directory"),
    as_json: bool = typer.Option(False, "--json", help="the manifest as JSON"),
) -> None:
    """Show a saved model's manifest: components, where they come from, its similarity, files."""
    manifest = _read_manifest(model)
    p = _printable
    similarity = manifest.get("similarity") or {"distance": "cosine", "normalized": False, "recorded": False}
    if as_json:  # JSON escapes control characters itself
        typer.echo(json.dumps({**manifest, "similarity": similarity}, indent=2))
        return
    typer.echo(f"model: {p(model)}")
    typer.echo(f"format: {p(manifest['format'])} v{manifest['format_version']}, saved by simplug {p(manifest.get('simplug_version'))}")
    typer.echo(f"embedding size: {p(manifest.get('embedding_size'))}")
    note = "" if similarity.get("recorded", True) else " (not recorded by this model's simplug; the default)"
    typer.echo(f"similarity: {p(similarity.get('distance'))} distance, embeddings "
               f"{'normalised' if similarity.get('normalized') else 'not normalised'}{note}")
    rows = []
    for c in manifest["components"]:
        config = json.dumps(c.get("config", {}))[:60]
        if c.get("source") == "local":
            rows.append([p(c["role"]), p(c["kind"]), p(c["class"]), "(local code)", "", p(config)])
        else:
            rows.append([p(c["role"]), p(c["kind"]), p(c["name"]), p(c["distribution"]), p(c.get("version") or ""), p(config)])
    typer.echo(text_table(["role", "kind", "name", "distribution", "version", "config"], rows))
    if manifest.get("training"):
        typer.echo(f"training: {p(json.dumps(manifest['training']))}")
    total = sum(f["size"] for f in manifest["files"].values())
    typer.echo(f"files: {len(manifest['files'])} ({total / 1e6:.2f} MB)")


@app.command()
def requirements(model: str = typer.Argument(..., help="saved model directory")) -> None:
    """Print the pip requirement lines a saved model needs to be loaded and served: simplug, the
    plugins' distributions, and what its components declare (e.g. sentence-transformers)."""
    from simplug.model.manifest import local_code_notes
    from simplug.model.manifest import requirements as model_requirements

    manifest = _read_manifest(model)
    try:
        lines = model_requirements(manifest)  # each one a validated PEP 508 requirement, never a pip option
    except (SimplugError, ValueError) as exc:
        _fail(_printable(f"{model}: a requirement in its manifest {exc}; the model is damaged or hostile"))
    for line in lines:
        typer.echo(_printable(line))
    for note in local_code_notes(manifest):
        typer.echo(f"# local code (load with trust_local_code=True): {_printable(note)}")


@app.command()
def serve(
    model: str = typer.Argument(..., help="saved model directory"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind; the default is loopback only"),
    port: int = typer.Option(8000, "--port", help="TCP port; 0 picks a free one (printed at start)"),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="allow a --host other machines can reach (there is no authentication)"),
    index: Optional[str] = typer.Option(None, "--index", help="an index folder or Qdrant URL: adds POST /search"),
    collection: str = typer.Option("simplug", "--collection", help="the index's collection"),
    max_batch: int = typer.Option(256, "--max-batch", min=1, help="most objects in one request (more: 413)"),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, "--max-body-bytes", min=1, help="largest request body (more: 413, not read)"),
    max_item_chars: int = typer.Option(20_000, "--max-item-chars", min=1, help="longest text item (longer: 413)"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="objects per forward pass"),
    max_connections: int = typer.Option(64, "--max-connections", min=1, help="requests handled at once; more wait"),
    batch_wait_ms: float = typer.Option(2.0, "--batch-wait-ms", min=0.0, help="how long concurrent requests are gathered into one forward pass"),
    no_micro_batching: bool = typer.Option(False, "--no-micro-batching", help="one request per forward pass"),
    request_timeout: float = typer.Option(30.0, "--request-timeout", min=0.1, help="seconds a whole request may take (more: 503)"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run the local code saved with the model"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no access log"),
) -> None:
    """Serve a saved model over HTTP (ASGI, uvicorn): POST /encode, POST /search (with --index),
    GET /health, GET /info, GET /openapi.json."""
    from simplug.model.similarity_model import SimilarityModel
    from simplug.serving.http import ServerError, is_loopback, make_server

    if not is_loopback(host) and not allow_remote:
        _fail(f"--host {host} is reachable from other machines and the server has no authentication; "
              "add --allow-remote to serve there anyway, or keep the default 127.0.0.1")
    opened = None
    try:
        loaded = SimilarityModel.load(model, trust_local_code=trust_local_code)
        if index is not None:
            from simplug.serving.search import check_index_model, open_index

            opened = open_index(index, collection=collection)
            check_index_model(opened, opened.require_info(), loaded)
        server = make_server(
            loaded, host=host, port=port, max_batch=max_batch, max_body_bytes=max_body_bytes,
            max_item_chars=max_item_chars, batch_size=batch_size, max_connections=max_connections,
            batch_wait_ms=0.0 if no_micro_batching else batch_wait_ms, micro_batching=not no_micro_batching,
            request_timeout=request_timeout, index=opened, access_log=not quiet,
        )
    except (SimplugError, ServerError, ValueError) as exc:
        if opened is not None:
            opened.close()
        _fail(str(exc))
    if not is_loopback(host):
        typer.echo(f"warning: listening on {host}, reachable from other machines; there is no authentication", err=True)
    endpoints = "POST /encode" + (", POST /search" if opened is not None else "") + ", GET /health, GET /info"
    typer.echo(f"serving {model} on {server.url} ({endpoints}); Ctrl-C stops")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if opened is not None:
            opened.close()
    typer.echo("stopped", err=True)


@app.command("index")
def index_command(
    model: str = typer.Argument(..., help="saved model directory"),
    data: str = typer.Argument(..., help="records to index: JSONL or CSV (one record per line), or .txt (a text per line)"),
    index: str = typer.Option(..., "--index", help="a folder (embedded Qdrant, created if new) or a Qdrant server URL"),
    collection: str = typer.Option("simplug", "--collection", help="collection name"),
    side: str = typer.Option("document", "--side", help="the side the records are, for a model with a head per side"),
    field: Optional[str] = typer.Option(None, "--field", help="the field holding the object to embed (default: obj, text, obj_b or obj_a)"),
    id_field: Optional[str] = typer.Option(None, "--id-field", help="a field of unique ids (default: a hash of each record)"),
    payload_fields: Optional[str] = typer.Option(None, "--payload-fields", help="comma-separated fields to keep with each point (default: the whole record)"),
    batch_size: int = typer.Option(1024, "--batch-size", min=1, help="records encoded and upserted at a time"),
    backend: str = typer.Option("qdrant", "--backend", help="the index plugin (simplug list --kind indexes)"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run code saved with the model"),
) -> None:
    """Embed records with a saved model and upsert them into an index; a rerun never duplicates."""
    from simplug.data.readers import iter_rows, read_objects
    from simplug.model.similarity_model import SimilarityModel
    from simplug.serving.search import index_records, open_index

    fields = [f.strip() for f in payload_fields.split(",") if f.strip()] if payload_fields else None
    try:
        loaded = SimilarityModel.load(model, trust_local_code=trust_local_code)
        if data.lower().endswith((".jsonl", ".csv")):
            records: object = iter_rows(data)
        else:
            records = [{"obj": obj} for obj in read_objects(data)]
        with open_index(index, collection=collection, backend=backend) as opened:
            report = index_records(loaded, opened, records, object_field=field, id_field=id_field,
                                   payload_fields=fields, side=side, batch_size=batch_size, show_progress=True)
    except (SimplugError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(report.summary())


@app.command("search")
def search_command(
    model: str = typer.Argument(..., help="saved model directory"),
    index: str = typer.Argument(..., help="the index folder or Qdrant URL given to simplug index"),
    queries: list[str] = typer.Argument(..., help="one or more queries (texts; for a tensor model, JSON lists)"),
    k: int = typer.Option(10, "-k", "--k", help="hits per query"),
    collection: str = typer.Option("simplug", "--collection", help="collection name"),
    where: Optional[str] = typer.Option(None, "--where", help='payload filter as JSON, e.g. \'{"category": "food"}\''),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    backend: str = typer.Option("qdrant", "--backend", help="the index plugin"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run code saved with the model"),
) -> None:
    """Search an index built by `simplug index` with the same model."""
    from simplug.model.similarity_model import SimilarityModel
    from simplug.serving.inputs import takes_tensors
    from simplug.serving.search import hits_as_json, open_index, search

    try:
        flt = json.loads(where) if where else None
    except json.JSONDecodeError as exc:
        _fail(f"--where is not valid JSON ({exc.msg}); write it like '{{\"category\": \"food\"}}'")
    if flt is not None and not isinstance(flt, dict):
        _fail("--where is a JSON object of field: value")
    try:
        loaded = SimilarityModel.load(model, trust_local_code=trust_local_code)
        objects: list = list(queries)
        if len(loaded.encoders) == 1 and takes_tensors(next(iter(loaded.encoders.values()))):
            try:
                objects = [json.loads(q) for q in queries]
            except json.JSONDecodeError:
                _fail("this model takes lists of numbers: give each query as JSON, e.g. '[0.1, 0.2, 0.3]'")
        with open_index(index, collection=collection, backend=backend) as opened:
            results = search(loaded, opened, objects, k=k, where=flt)
    except (SimplugError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps([{"query": q, "hits": hits} for q, hits in zip(queries, hits_as_json(results))], indent=2))
        return
    for query, hits in zip(queries, results):
        typer.echo(f"query: {query}")
        rows = [[str(rank), f"{hit.score:.4f}", hit.id, json.dumps(hit.payload, ensure_ascii=False)[:80]]
                for rank, hit in enumerate(hits, start=1)]
        typer.echo(text_table(["rank", "score", "id", "payload"], rows))


@app.command("export")
def export_model(
    model: str = typer.Argument(..., help="saved model directory"),
    output: str = typer.Option(..., "--output", "-o", help="file to write, e.g. model.onnx"),
    fmt: str = typer.Option("onnx", "--format", help="export format (onnx)"),
    part: str = typer.Option("model", "--part", help="'model' (tensor encoders + head) or 'head' (head alone)"),
    input_shape: list[str] = typer.Option([], "--input-shape", help="one object's shape where the encoder does not say: DIMS or KEY=DIMS, e.g. 3,28,28"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run the local code saved with the model"),
) -> None:
    """Export the tensor part of a saved model to ONNX, checked against PyTorch with onnxruntime."""
    if fmt != "onnx":
        _fail(f"unknown --format {fmt!r}; the formats are: onnx")
    from simplug.model.similarity_model import SimilarityModel
    from simplug.serving.export import export_onnx, parse_input_shapes

    try:
        loaded = SimilarityModel.load(model, trust_local_code=trust_local_code)
        shapes = parse_input_shapes(input_shape, list(loaded.encoders))
        report = export_onnx(loaded, output, part=part, input_shapes=shapes, opset=opset)
    except SimplugError as exc:
        _fail(str(exc))
    typer.echo(report.summary())


@app.command()
def train(
    config: str = typer.Argument(..., help="a TOML job config (see examples/category_routing/config.toml)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="output directory (default: [output] dir)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="override [train] epochs"),
) -> None:
    """Train from a config; print held-out metrics before and after; save model, logs, report, plot."""
    from simplug.cli.train_job import run_training
    from simplug.errors import TrainingInterrupted

    try:
        run_training(config, output_dir=out, epochs=epochs, echo=typer.echo)
    except TrainingInterrupted as exc:
        _fail(str(exc), INTERRUPTED)
    except KeyboardInterrupt:  # a second Ctrl-C, or one while the outputs were written
        _fail("interrupted (Ctrl-C); a model being saved is either complete or absent (saves are atomic)", INTERRUPTED)
    except SimplugError as exc:
        _fail(str(exc))


@app.command()
def tune(
    config: str = typer.Argument(..., help="a TOML job config with a [tune] section (see examples/category_routing/config.toml)"),
    trials: Optional[int] = typer.Option(None, "--trials", help="finished trials the study should hold (default: [tune] trials, 20)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="stop starting trials after this many seconds"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="output directory (default: [tune] dir, else <[output] dir>/tune)"),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="study database URL shared by several machines, e.g. postgresql://host/db (default: sqlite in the output directory)"
    ),
) -> None:
    """Search the [tune.space] of a config with Optuna; choose on a validation split carved from
    the training data; score the held-out split once; save the model and a config to retrain it."""
    from simplug.cli.tune_job import run_tuning
    from simplug.errors import TrainingInterrupted

    try:
        run_tuning(config, trials=trials, timeout=timeout, out=out, storage=storage, echo=typer.echo)
    except TrainingInterrupted as exc:
        _fail(str(exc), INTERRUPTED)
    except KeyboardInterrupt:  # a second Ctrl-C, during the refit or while the outputs were written
        _fail("interrupted (Ctrl-C); the finished trials are in the study, and the same command resumes it; a model "
              "being saved is either complete or absent (saves are atomic)", INTERRUPTED)
    except SimplugError as exc:
        _fail(str(exc))


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="saved model directory"),
    data: str = typer.Argument(..., help="JSONL/CSV of pairs (obj_a, obj_b) or groups (obj, group)"),
    candidates: Optional[str] = typer.Option(
        None, "--candidates", help="known items to retrieve from (groups default: each item against the other items)"
    ),
    kind: Optional[str] = typer.Option(None, "--kind", help="pairs or groups (default: as trained, else from the fields)"),
    fields: Optional[str] = typer.Option(
        None, "--fields", help="your column names, e.g. obj=text,group=category (default: as trained, else obj/group, obj_a/obj_b)"
    ),
    metric: Optional[list[str]] = typer.Option(
        None, "--metric", "-m", help="a registered metric, NAME or NAME:arg=value,... (e.g. recall:k=5); repeat for "
        "more (default: retrieval_precision@1, retrieval_reciprocal_rank, retrieval_r_precision, recall@1/5/10)"
    ),
    distance: Optional[str] = typer.Option(None, "--distance", help="default: as trained, else cosine"),
    batch_size: int = typer.Option(64, "--batch-size"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run code saved with the model"),
    as_json: bool = typer.Option(False, "--json", help="print only the metrics, as JSON"),
    index: Optional[str] = typer.Option(
        None, "--index", help="rank through this index (a new folder, or a Qdrant URL) instead of exact search; reports recall vs exact"
    ),
    collection: str = typer.Option("simplug-evaluate", "--collection", help="with --index: the collection to fill"),
) -> None:
    """Retrieval metrics of a saved model on a data file."""
    from simplug.cli.evaluate_job import parse_metric, run_evaluation

    mapping = {}
    for item in (fields or "").split(","):
        if item.strip():
            ours, sep, theirs = item.partition("=")
            if not sep:
                _fail(f"--fields takes name=column pairs separated by commas, got {item!r}")
            mapping[ours.strip()] = theirs.strip()
    try:
        specs = [parse_metric(text) for text in metric or []]
        result = run_evaluation(model, data, kind=kind, fields=mapping, candidates_path=candidates, distance=distance,
                                metrics=specs, batch_size=batch_size, trust_local_code=trust_local_code,
                                index=index, collection=collection)
    except (SimplugError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result["metrics"], indent=2))
        return
    typer.echo(f"{result['kind']}, {result['distance']} distance: {result['protocol']}")
    typer.echo(format_comparison({"model": result["metrics"]}))


@app.command()
def encode(
    model: str = typer.Argument(..., help="saved model directory"),
    inputs: str = typer.Argument(..., help=".txt (one text per line), .jsonl (one JSON value per line), .json (a list) or .npy"),
    output: str = typer.Option(..., "--output", "-o", help="where to write the embeddings (.npy)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run code saved with the model"),
    side: Optional[str] = typer.Option(None, "--side", help="query or document, for a model with a head per side"),
) -> None:
    """Embed objects from a file with a saved model and write them as a .npy array."""
    import numpy as np
    from simplug.data.readers import read_objects
    from simplug.model.similarity_model import SimilarityModel

    if not output.endswith(".npy"):
        _fail(f"the output is a NumPy file: give a path ending in .npy, got {output!r}")
    try:
        objects = read_objects(inputs)
        loaded = SimilarityModel.load(model, trust_local_code=trust_local_code)
        embeddings = loaded.encode(objects, batch_size=batch_size, show_progress=True, side=side)
    except (SimplugError, ValueError) as exc:
        _fail(str(exc))
    np.save(output, embeddings)
    typer.echo(f"wrote {embeddings.shape[0]} embeddings of size {embeddings.shape[1]} to {output}")

@app.command("new-plugin")
def new_plugin(
    name: str = typer.Argument(..., help="distribution name of the new package, e.g. simplug-attention-head"),
    kind: str = typer.Option(..., "--kind", "-k", help=f"one of: {', '.join(KIND_NAMES)}"),
    directory: str = typer.Option(".", "--dir", help="directory to create the package in (as DIR/NAME)"),
) -> None:
    """Write a plugin package with one working component, its tests and a README."""
    from simplug.registry import singular_kind
    from simplug.scaffold import create_plugin

    try:
        created = create_plugin(name, kind, directory)
    except SimplugError as exc:
        _fail(str(exc))
    typer.echo(f"created {created.path}: the {singular_kind(created.kind)} {created.component!r} "
               f"({created.module}.{created.class_name})")
    for rel in created.files:
        typer.echo(f"  {rel}")
    typer.echo(f"next: cd {created.path} && pip install -e '.[test]' && python -m pytest")


@app.command("convert-quaterion")
def convert_quaterion(
    old: str = typer.Argument(..., help="a model directory saved by quaterion-models (config.json + weights)"),
    new: str = typer.Argument(..., help="where to write the simplug model (a new directory)"),
    trust_code: bool = typer.Option(
        False, "--trust-code",
        help="import the encoder and head classes named in OLD/config.json and run their load() "
             "(their code runs with your permissions: only for models you trust)"),
) -> None:
    """Turn a model saved by Quaterion's quaterion-models into a simplug model."""
    try:
        from quaterion_models.convert import ConversionError, convert_quaterion_model
    except ImportError:
        _fail("converting needs the Quaterion compatibility distribution: pip install -e compat/quaterion "
              "(from a clone of simplug), then run this again")
    if trust_code:
        typer.echo(f"--trust-code: importing the classes that {old}/config.json names", err=True)
    try:
        written = convert_quaterion_model(old, new, trust_code=trust_code)
    except (ConversionError, SimplugError) as exc:
        _fail(str(exc))
    typer.echo(f"converted {old} -> {written}; serve it with: simplug serve {written}")


def main() -> None:
    try:
        app()
    except SimplugError as exc:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
