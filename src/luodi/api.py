"""The Python API: one function per lifecycle verb. The CLI is a thin layer over these functions; `train` is
the training job in `jobs/train.py`, re-exported here.

    import luodi.api as luodi
    result = luodi.train("luodi.yaml")
    frame = luodi.predict("churn@latest", [{"tenure": 3, "contract": "monthly"}])
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from luodi.config import is_valid_name, validate_config
from luodi.errors import InputError
from luodi.jobs.distributed import Launch as Launch  # re-exported: how train_distributed starts torchrun
from luodi.jobs.retrain import RetrainResult as RetrainResult  # re-exported: the retrain verb and its result
from luodi.jobs.retrain import retrain as retrain
from luodi.jobs.train import TrainResult as TrainResult  # re-exported: the API's train verb and its result
from luodi.jobs.train import train as train
from luodi.jobs.tune import TuneResult as TuneResult  # re-exported: the API's tune verb and its result
from luodi.jobs.tune import tune as tune
from luodi.store import ModelVersion, Run, Store, observed, parse_reference

if TYPE_CHECKING:
    from luodi.config import MonitorConfig
    from luodi.monitor.alerts import AlertSettings
    from luodi.monitor.check import MonitorResult
    from luodi.package import ModelPackage

# Heavy modules (torch, pyarrow, pandas, sklearn) are imported inside the functions so that
# `import luodi.api` and `luodi --help` stay fast.


def train_distributed(config: str | Path, launch: Launch, overrides: list[str] | tuple[str, ...] = (), *,
                      home: str | Path | None = None, progress: str = "auto") -> TrainResult | None:
    """Train on several processes (and machines) with DDP: starts torchrun, which runs `luodi train CONFIG` on
    `launch.nproc` ranks per machine (`Launch(nproc, nnodes, rdzv_endpoint, rdzv_id, max_restarts)`, torchrun's flags).

    Rank 0 records the run and registers the version; returns its `TrainResult` on the machine that ran rank 0
    (None on the others). `trainer.batch_size` is the global batch, split across the ranks. See docs/scale.md.
    """
    from luodi.jobs.distributed import launch as run_torchrun

    result = run_torchrun(config, launch, overrides, home=home, progress=progress)
    return TrainResult(**result) if result is not None else None


@dataclass
class InitResult:
    config_path: str | None  # None for rows in memory: nothing is written, `config` is the result
    name: str
    task: str
    task_reason: str
    features: dict[str, str]
    dropped: dict[str, str]
    rows: int
    config: dict[str, Any] | None = None  # rows in memory: the config, its data.train those rows (for `train`)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(dataclasses.replace(self, config=None)).items()
                if key != "config"}


# ------------------------------------------------------------------------------------------------ init
def init(data: Any, target: str | None = None, *, task: str | None = None, output: str | Path | None = None,
         name: str | None = None, force: bool = False, base: str | Path | None = None, tune: bool = False,
         time_budget: str | float | None = None, encoder: str | Path | None = None) -> InitResult:
    """Write a commented starter config inferred from a data file, or infer one from rows in memory.

    Args:
        data: the training table (CSV, Parquet or JSONL), or a folder with one subfolder of images per class; or a
            pandas DataFrame (an Arrow table, records): then nothing is written and `result.config` is the config,
            its `data.train` the rows, ready for `luodi.train(result.config)`.
        target: the column to predict (for an image folder: `label`, the default).
        task: regression, binary or multiclass; inferred from the target when omitted.
        output: where to write the config (default `luodi.yaml`; not for rows in memory).
        name: the model name in the registry (default: from the file name; for rows in memory, 'model').
        force: overwrite an existing config file.
        base: text_generation: a local Hugging Face checkpoint folder to fine-tune (LoRA) instead of a GPT trained
            from scratch.
        tune: also write a `search:` section for `luodi tune` (ranges around the inferred model, with why).
        time_budget: how long training may take on a laptop CPU ('10m', '90s', '1h' or seconds; default 5
            minutes): the epoch cap is what fits it, by an estimate of the model's cost per row.
        encoder: a local sentence-encoder folder (e.g. all-MiniLM-L6-v2): text columns become its frozen
            embeddings (computed once and cached) instead of TF-IDF terms.
    """
    from luodi.data import budget, starter
    from luodi.data.sources import read_table
    from luodi.io import atomic_write_text
    from luodi.tasks import TASKS

    seconds = budget.DEFAULT_BUDGET_S if time_budget is None else budget.parse_duration(str(time_budget))
    if not isinstance(data, str | Path):
        if output is not None:
            raise InputError("rows in memory have no file for a config to point at: train from result.config, or "
                             "save the rows (frame.to_csv) and init from the file")
        if target is None:
            raise InputError("give target=COLUMN: the column to predict")
        plan, config = starter.starter_for_rows(data, target, task, name, seconds,
                                                None if encoder is None else str(Path(encoder).resolve()))
        return InitResult(None, plan.name, plan.task.task, plan.task.reason,
                          {c.name: f"{c.type}: {c.reason}" for c in plan.features},
                          {c.name: c.reason for c in plan.dropped}, plan.rows, config)
    data, output = Path(data), Path(output if output is not None else "luodi.yaml")
    own_starter = getattr(TASKS.get(task or ""), "starter", None)  # a task that writes its own (text_generation)
    if own_starter is not None:
        if tune:
            raise InputError(f"--tune writes search ranges for table, image and text models, not for --task {task}")
        if output.exists() and not force:
            raise InputError(f"{output} already exists; pass --force to overwrite it or --output to write elsewhere")
        table = read_table(data)
        model = name or starter.model_name(data)
        text, target = own_starter(table, starter.relative_data_path(data, output), model,
                                   None if base is None else str(Path(base).resolve()))
        text = starter.align_comments(text.replace("luodi train {this file}", f"luodi train {output}"))
        validate_config(yaml.safe_load(text), str(output))
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output, text)
        return InitResult(str(output), model, str(task), "given with --task", {target: "text"}, {}, table.num_rows)
    if target is None:
        if not data.is_dir():
            raise InputError("give --target COLUMN: the column to predict")
        from luodi.data.images import LABEL_COLUMN

        target = LABEL_COLUMN
    if output.exists() and not force:
        raise InputError(f"{output} already exists; pass --force to overwrite it or --output to write elsewhere")
    table = read_table(data)
    written_encoder = None
    if encoder is not None:
        from luodi.checkpoints import checkpoint_folder

        written_encoder = starter.relative_data_path(checkpoint_folder(encoder, "--encoder"), output)
    plan = starter.plan(table, data, target, task, name, seconds, written_encoder)
    text = starter.render(plan, starter.relative_data_path(data, output), data, str(output))
    if tune:
        text += starter.search_section(plan)
    validate_config(yaml.safe_load(text), str(output))  # what init writes must load; a failure here is a bug
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, text)
    return InitResult(str(output), plan.name, plan.task.task, plan.task.reason,
                      {c.name: f"{c.type}: {c.reason}" for c in plan.features},
                      {c.name: c.reason for c in plan.dropped}, plan.rows)


# ------------------------------------------------------------------------------- using a model
def load_model(model: str | Path | ModelPackage | dict[str, Any], *, home: str | Path | None = None,
               base: str | Path | None = None) -> Any:
    """A verified, loaded package from a reference (`name`, `name@alias`, `name/version`) or a folder path (or the
    package itself, already loaded, or `train(...).model`, `{"name": ..., "version": ...}`).

    `base`: for a LoRA adapter package, where its base checkpoint is now (default $LUODI_BASE, else the folder it
    was trained from); its sha256 must be the recorded one."""
    from luodi.package import ModelPackage, load_package

    if isinstance(model, ModelPackage):
        return model
    if isinstance(model, dict):
        if not isinstance(model.get("name"), str) or not isinstance(model.get("version"), int):
            raise InputError(f"model {model!r}: expected a reference, a package folder or train(...).model, "
                             "{'name': ..., 'version': ...}")
        model = f"{model['name']}/{model['version']}"
    path = Path(model)
    if _is_package_folder(path):
        return load_package(path, base)
    not_found = InputError(f"{model}: not a model package folder nor a model reference (name, name@alias, name/3)")
    if isinstance(model, Path):
        raise not_found
    if "/" in model and not is_valid_name(model.partition("@")[0].partition("/")[0]):
        raise not_found  # a path that is not a package folder, rather than a misspelt version
    reference = parse_reference(model)
    return load_package(Store(home).resolve(reference).path, base)


def _register_written(package: ModelPackage, out: str, home: str | Path | None,
                      write: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], ModelVersion]:
    """Register as a new version of `out` the package `write` puts into a staging folder (made from `package`);
    the new manifest and version. The staging folder is removed if anything fails."""
    store = Store(home)
    staging = store.staging_dir()
    try:
        manifest = write(staging)
        version = store.register_model(out, staging, run_id=None, task=manifest["task"],
                                       metrics=manifest["metrics"], description=package.config.description)
    except BaseException:
        store.remove_staging(staging)
        raise
    return manifest, version


def merge(model: str | Path | dict[str, Any], out: str, *, base: str | Path | None = None,
          home: str | Path | None = None) -> dict[str, Any]:
    """Fold a LoRA package's adapters into its base checkpoint and register the result as a new version of `out`:
    a standalone package (every weight, no base needed) that generates what the adapter package generates.

    Args:
        model: an adapter package (a reference or a folder).
        out: the model name to register the merged package under.
        base: where the base checkpoint is, when it moved (default $LUODI_BASE, else where it was).

    Returns `{"model", "version", "package", "merged_from", "bytes"}` (`bytes`: the new package's weights).
    """
    from luodi.package import WEIGHTS, merge_adapters
    from luodi.store import validate_name

    validate_name(out, "--out model name")
    package = load_model(model, home=home, base=base)
    manifest, version = _register_written(package, out, home, lambda staging: merge_adapters(package, staging, out))
    return {"model": out, "version": version.version, "package": str(version.path),
            "merged_from": str(package.path), "bytes": manifest["files"][WEIGHTS]["bytes"]}


def quantize_int8(model: str | Path | dict[str, Any], out: str, *, home: str | Path | None = None
                  ) -> dict[str, Any]:
    """Quantize a text_generation package's linear layers to int8 weights (optimize/weight_only.py) and register
    the result as a new version of `out`: `luodi generate`, `luodi serve` and `luodi evaluate` load it like any
    package. Evaluate it before trusting it (perplexity moves by the quantization).

    Returns `{"model", "version", "package", "quantized_from", "layers", "bytes"}` (`bytes`: the new weights)."""
    from luodi.optimize.weight_only import quantize_package
    from luodi.package import WEIGHTS
    from luodi.store import validate_name

    validate_name(out, "--out model name")
    package = load_model(model, home=home)
    manifest, version = _register_written(package, out, home,
                                          lambda staging: quantize_package(package, staging, out))
    return {"model": out, "version": version.version, "package": str(version.path),
            "quantized_from": str(package.path), "layers": len(manifest["weight_only"]["layers"]),
            "bytes": manifest["files"][WEIGHTS]["bytes"]}


def _is_package_folder(path: Path) -> bool:
    """A folder holding package.json; a name the OS refuses (too long, a NUL byte) is no folder, not a crash."""
    try:
        return path.is_dir() and (path / "package.json").exists()
    except (OSError, ValueError):
        return False


def _source(data: Any) -> str:
    return str(data) if isinstance(data, str | Path) else "records"


def evaluate(model: str | Path | dict[str, Any], data: Any, *, home: str | Path | None = None, strict: bool = False,
             report: str | Path | bool = True, base: str | Path | None = None) -> dict[str, Any]:
    """Metrics of a model on labelled data (a file, DataFrame or records holding the target column), and the
    evaluation report.

    Args:
        report: True writes report.html under `LUODI_HOME/reports/`; a path writes it there; False writes none.
        base: a LoRA package's base checkpoint, when it moved (see `load_model`).

    Returns `{"metrics": {...}, "rows": n, "model": ..., "package": ..., "warnings": [...], "report": path or
    None, "details": {...}}`; `details` holds the report's other numbers (per-class or residual tables, slices,
    importance, data summary), the very values in the report's JSON block.
    """
    from luodi.evaluate.scoring import split_metrics
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home, base=base)
    set_inference_threads(package.config.runtime)
    source = _source(data)
    table, encoded = package.encode(data, source, with_target=True, strict=strict)
    # The batch the run scored its test split with: the config says what fits (a language model's logits are
    # windows x context x vocabulary floats).
    outputs = package.outputs(encoded, batch_size=package.config.trainer.eval_batch_size)
    assert encoded.target is not None
    metrics = split_metrics(package.task, package.pipeline.target, outputs, encoded.target)
    warnings = encoded.unseen.messages()
    result: dict[str, Any] = {"metrics": metrics, "rows": len(encoded), "model": package.manifest["name"],
                              "package": str(package.path), "warnings": warnings, "report": None, "details": {}}
    if report is False:
        return result
    from luodi.evaluate.report import DETAILS, build_report_or_warn
    from luodi.evaluate.report_inputs import evaluation_input

    page = build_report_or_warn(lambda: evaluation_input(package, table, encoded, outputs, metrics, source),
                                package.config.report, warnings)
    if page is not None:
        destination = None if isinstance(report, bool) else report
        result["report"] = str(_write_page(page[0], destination, home, f"evaluate-{package.config.name}"))
        result["details"] = {key: page[1][key] for key in DETAILS if key in page[1]}
    return result


def _write_page(html: str, path: str | Path | None, home: str | Path | None, stem: str) -> Path:
    """Write a page to `path`, or by default to a new file under LUODI_HOME/reports/."""
    import secrets

    from luodi.io import atomic_write_text

    if path is None:
        path = Store(home).home / "reports" / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}.html"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    return path


def generate(model: str | Path | ModelPackage, prompt: str | list[dict[str, str]], *, max_tokens: int = 64,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
             stop: Sequence[str] = (), seed: int | None = None, home: str | Path | None = None,
             base: str | Path | None = None) -> Iterator[str]:
    """Text continuing `prompt`, streamed: pieces as a text_generation model writes them (KV cache, one token a step).

    Args:
        model: a reference (`name`, `name@alias`, `name/version`), a package folder or a loaded package.
        prompt: the text to continue; for a model trained on chat data, a user message or a list of
            {"role", "content"} messages.
        max_tokens: new tokens at most; generation also ends at the end-of-text token or a full context.
        temperature: 0 is greedy; above 0 samples (with top_k, top_p), reproducibly with `seed`.
        repetition_penalty: > 1 makes tokens already seen less likely.
        stop: the text ends before the first of these strings.
        base: a LoRA package's base checkpoint, when it moved (see `load_model`).

    Example: `print("".join(luodi.api.generate("story@latest", "Once upon a time")))`.
    """
    from luodi.models.generation import Sampling
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home, base=base)
    set_inference_threads(package.config.runtime)
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        repetition_penalty=repetition_penalty, stop=tuple(stop), seed=seed)
    sampling.check()  # now, not at the first piece the caller asks for
    return package.generate(prompt, sampling)


def chat(model: str | Path | ModelPackage, *, system: str | None = None, max_tokens: int = 256,
         temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
         stop: Sequence[str] = (), seed: int | None = None, home: str | Path | None = None) -> Any:
    """A multi-turn conversation with a text_generation model (`luodi chat`).

    Returns a `luodi.models.chat.Chat`: `turn = chat.send("hello")` starts a reply, `for piece in turn` streams
    it (the same generation as `generate`, with the same sampling options), `turn.dropped` says how many of the
    oldest turns were dropped to keep the conversation within the model's context; `chat.reset()` forgets the
    turns. `system` is a system message kept in front of every turn.
    """
    from luodi.models.chat import Chat
    from luodi.models.generation import Sampling
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home)
    if not hasattr(package.pipeline.target, "conversation_ids"):
        raise InputError(f"{package.path}: a {package.task.name} model predicts rows; it does not chat")
    set_inference_threads(package.config.runtime)
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        repetition_penalty=repetition_penalty, stop=tuple(stop), seed=seed)
    return Chat(package.model, package.pipeline.target, sampling, system)


def embed(model: str | Path | ModelPackage, texts: str | Sequence[str] | Path, *, truncate: bool = False,
          out: str | Path | None = None, home: str | Path | None = None) -> Any:
    """Embeddings of texts: the vectors a text encoder model computes for them (what /v1/embeddings answers).

    Args:
        model: a reference (`name`, `name@alias`, `name/version`), a package folder or a loaded package whose model
            reads one text feature as tokens (model.type hf, transformer or rnn; see docs/serving.md#embeddings).
        texts: a text, a list of texts, or a `Path` to a table (CSV, Parquet, JSONL) holding the model's text
            column (or only one column), or a .txt file (a text per paragraph, or per line).
        truncate: cut a text longer than the feature's max_length to it, instead of refusing it.
        out: also write the vectors: `.npy` (the float32 matrix), `.parquet` or `.jsonl` (each text and its
            `embedding`).

    Returns a float32 NumPy array (texts, dimensions); vectors have length 1 when the checkpoint's
    sentence-transformers modules normalize (MiniLM's do), so a dot product is the cosine similarity.
    """
    from luodi.models.embedding import embed_texts, text_encoder
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home)
    encoder = text_encoder(package.model, package.pipeline)
    if isinstance(texts, Path):
        strings, name = _texts_of_file(texts, encoder.tokens.name)
    else:
        strings, name = [texts] if isinstance(texts, str) else list(texts), lambda index: f"texts[{index}]"
    set_inference_threads(package.config.runtime)
    vectors = embed_texts(encoder, strings, truncate, name)
    if out is not None:
        _write_embeddings(Path(out), encoder.tokens.name, strings, vectors)
    return vectors


def _texts_of_file(path: Path, column: str) -> tuple[list[str], Any]:
    """The texts of a table's `column` (or its only column) and how to name a row in errors."""
    from luodi.data.sources import read_table

    table = read_table(path)
    found = column if column in table.column_names else table.column_names[0] if table.num_columns == 1 else None
    if found is None:
        raise InputError(f"{path}: no column {column!r} (the model's text feature) among {table.column_names}")
    values = table.column(found).to_pylist()
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise InputError(f"{path}: column {found!r} row {row + 1} is {'empty' if value is None else 'not a text'}")
    return values, lambda index: f"{path}: column {found!r} row {index + 1}"


def _write_embeddings(path: Path, column: str, texts: list[str], vectors: Any) -> None:
    import numpy as np
    import pandas as pd

    from luodi.io import atomic_write

    if path.suffix.lower() == ".npy":
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: np.save(handle, vectors))
    elif path.suffix.lower() in (".parquet", ".jsonl"):
        write_table(pd.DataFrame({column: texts, "embedding": list(vectors)}), path)
    else:
        raise InputError(f"{path}: embeddings are written as .npy, .parquet or .jsonl")


def explain(model: str | Path | dict[str, Any], data: Any, *, out: str | Path | None = None,
            home: str | Path | None = None, target_class: str | None = None, steps: int = 50,
            strict: bool = False) -> Any:
    """Per-row attributions of a model's predictions to each input column (integrated gradients, Captum).

    Args:
        model: a reference (`name`, `name@alias`, `name/version`) or a package folder.
        data: a file path, DataFrame, dict or list of dicts (no target needed).
        out: also write the table (CSV, Parquet or JSONL by suffix).
        target_class: explain this class's probability instead of the predicted class's.
        steps: integration steps; more is closer to exact (see the `delta` in the result).

    Returns a `luodi.evaluate.explain.Explanation`: `.to_frame()` (one `<column>_attribution` per input column,
    one `<column>_tokens` JSON list per text column) and `.to_dict()`; a text read as tokens (rnn, transformer,
    hf) also gets one attribution per token in `.tokens[column][row]`.
    """
    from luodi.evaluate.explain import explain as explain_rows
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home)
    set_inference_threads(package.config.runtime)
    explanation = explain_rows(package, data, source=_source(data), target_class=target_class, steps=steps,
                               strict=strict)
    if out is not None:
        write_table(explanation.to_frame(), Path(out))
    return explanation


def compare(runs: list[str] | tuple[str, ...], *, out: str | Path | None = None,
            home: str | Path | None = None) -> dict[str, Any]:
    """Compare training runs: config differences, metrics with the best marked.

    A run is given by id (or unique prefix), or by a model version (`churn/2`, `churn@production`): the run that
    trained it. Writes one HTML page to `out` (default: a new file under `LUODI_HOME/reports/`); returns the
    comparison (`runs`, `metrics`, `best`, `differences`, `same`) with `report`, the page's path.
    """
    from luodi.evaluate.compare import compare_runs, render_comparison

    if len(runs) < 2:
        raise InputError("compare needs at least two runs (see `luodi runs ls`)")
    store = Store(home)

    def run_of(reference: str) -> Run:
        if parse_reference(reference, what="run id").bare:
            return store.get_run(reference)
        version = store.resolve(reference)
        if version.run_id is None:
            raise InputError(f"{reference}: this model version was registered without a run")
        return store.get_run(version.run_id)

    found = [observed(run_of(reference)) for reference in runs]
    duplicates = sorted({run.id for run in found if [r.id for r in found].count(run.id) > 1})
    if duplicates:
        raise InputError(f"run {duplicates[0]} is listed more than once")
    comparison = compare_runs([run.to_dict() for run in found])
    page = render_comparison(comparison, [store.epoch_history(run.id) for run in found])
    return {**comparison, "report": str(_write_page(page, out, home, "compare"))}


def predict(model: str | Path | ModelPackage | dict[str, Any], data: Any, *, out: str | Path | None = None,
            home: str | Path | None = None, strict: bool = False, keep_input: bool = True) -> Any:
    """Predict raw records (file path, DataFrame, dict or list of dicts) and return a pandas DataFrame.

    `model` is a reference, a package folder, a loaded package or `train(...).model`. The input columns come first
    (as `luodi predict` writes them; `keep_input=False` drops them), then `<target>_prediction` and, for
    classifiers, `<target>_probability_<class>`. With `out`, the result is also written (CSV, Parquet or JSONL by
    suffix).
    """
    import pandas as pd

    from luodi.data.sources import to_table

    package = load_model(model, home=home)
    source = _source(data)
    table = to_table(data, source)
    frame = package.predict_frame(table, source, strict)
    if keep_input:
        warnings = frame.attrs["warnings"]
        frame = pd.concat([table.to_pandas(), frame], axis=1)
        frame.attrs["warnings"] = warnings
    if out is not None:
        write_table(frame, Path(out))
    return frame


def predict_text(model: str | Path | ModelPackage, texts: str | list[str], *, out: str | Path | None = None,
                 home: str | Path | None = None, strict: bool = False) -> Any:
    """Predict raw texts with a model whose one input is a text column (`luodi predict --text`).

    Returns the DataFrame `predict` gives, the texts first.
    """
    package = load_model(model, home=home)
    features = package.config.input_features
    if len(features) != 1 or features[0].type != "text":
        raise InputError(f"{package.path}: the model reads {[f.name for f in features]}, not one text column; "
                         "give a table with --data")
    rows = [{features[0].name: text} for text in ([texts] if isinstance(texts, str) else texts)]
    return predict(package, rows, out=out, strict=strict, keep_input=True)


def write_table(frame: Any, path: Path) -> None:
    """Write a DataFrame atomically as CSV, Parquet or JSONL (by suffix)."""
    from luodi.data.sources import table_format
    from luodi.io import atomic_write

    fmt = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        atomic_write(path, lambda handle: frame.to_csv(handle, index=False, sep=sep), mode="w")
    elif fmt == "parquet":
        atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))
    else:
        atomic_write(path, lambda handle: frame.to_json(handle, orient="records", lines=True), mode="w")


# ------------------------------------------------------------------------------------------ optimize
def _split_rows(package: ModelPackage, limit_train: int = 4096) -> tuple[Any, Any]:
    """The package's training rows (at most `limit_train`, for calibration and fine-tuning) and validation rows,
    split from its config's data as training split them, encoded with the package's feature state."""
    from luodi.jobs.fit import read_splits

    splits, _ = read_splits(package.config)
    source = str(package.config.data.train)
    train = package.pipeline.transform(splits.train.slice(0, limit_train), f"{source} (train split)", True)
    validation = package.pipeline.transform(splits.validation, f"{source} (validation split)", True)
    return train, validation


def _registered(model: str | Path, home: str | Path | None) -> ModelVersion:
    """The registered version a reference points at (optimize registers the next version of its model)."""
    if _is_package_folder(Path(model)):
        raise InputError(f"{model}: give a registered model (name, name@alias, name/3); optimize registers the "
                         "chosen variant as the next version of that model")
    return Store(home).resolve(parse_reference(str(model)))


def export(model: str | Path, out: str | Path, *, format: str = "onnx", home: str | Path | None = None,
           tolerance: float = 1e-4) -> dict[str, Any]:
    """Export a model as ONNX: a copy of its package in `out` (a new folder) holding `model.onnx`, parity-checked
    against eager torch on the validation split (largest output difference and metric differences, in the copy's
    package.json under `onnx`). The folder is a package: `luodi serve OUT` runs it with ONNX Runtime.

    Returns the `onnx` entry with `package` (the folder) and `file` (the ONNX file's path).
    """
    import shutil

    from luodi.optimize.export import export_onnx
    from luodi.train.runtime import set_inference_threads

    if format != "onnx":
        raise InputError(f"--format {format!r}: luodi exports onnx")
    package = load_model(model, home=home)
    if hasattr(package.pipeline.target, "prompt_ids"):
        raise InputError(f"{model}: a {package.task.name} model is not exported to ONNX (tables, images and text "
                         "classification are)")
    destination = Path(out)
    if destination.exists():
        raise InputError(f"{destination} already exists; give a new folder with --out")
    _, validation = _split_rows(package, limit_train=1)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(package.path, staging)
    try:
        entry = export_onnx(staging, rows=validation, tolerance=tolerance,
                            threads=set_inference_threads(package.config.runtime))
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**entry, "package": str(destination), "file": str(destination / entry["file"])}


def optimize(model: str, *, max_drop: float = 0.01, metric: str | None = None,
             batch_sizes: Sequence[int] = (1, 32), variants: Sequence[str] | None = None,
             exclude_nodes: Sequence[str] = (), fine_tune_steps: int = 100, register: bool = True,
             home: str | Path | None = None) -> dict[str, Any]:
    """Try every variant of a registered model (ONNX Runtime fp32, int8 dynamic and static, torch int8, channels_last,
    torch.compile, bf16, pruning; a language model: int8 weight-only, LoRA merged, merged + int8; see
    docs/optimize.md), score each on the validation split with the task's metric, time it at `batch_sizes` (a
    language model: greedy decoding tokens/s), and register the fastest one within `max_drop` of eager fp32 as the
    model's next version.

    Args:
        model: `name`, `name@alias` or `name/version`.
        max_drop: how much worse than eager fp32 a variant may score, in the metric's units (0.01: one point); for a
            language model relative (0.02: perplexity at most 2% higher).
        metric: the metric the budget is on (default: the task's, e.g. accuracy).
        batch_sizes: the batch sizes latency is measured at; a variant is as fast as the geometric mean of its ratios.
        variants: the variant names to try (default: all; `luodi.optimize.variants.VARIANTS`).
        exclude_nodes: ONNX node names static int8 leaves in fp32 (sensitive layers).
        fine_tune_steps: steps of the fine-tune after pruning.
        register: False measures and reports only.

    Returns `{"variants": [...], "registered": "name/version" or None, "chosen", "verdict", "metric", "report"}`.
    """
    import tempfile

    from luodi.optimize import publish
    from luodi.optimize.search import clean, search
    from luodi.package import load_package
    from luodi.train.runtime import set_inference_threads

    version = _registered(model, home)
    package = load_package(version.path)
    threads = set_inference_threads(package.config.runtime)
    # a language model's variants use no training rows (no calibration, no fine-tune): encode one, not thousands
    train_rows, validation = _split_rows(package, 1 if hasattr(package.pipeline.target, "prompt_ids") else 4096)
    workdir = Path(tempfile.mkdtemp(prefix="luodi-optimize-"))
    try:
        outcome = search(package, train_rows, validation, workdir=workdir, max_drop=max_drop, metric=metric,
                         batch_sizes=list(batch_sizes), variants=None if variants is None else list(variants),
                         threads=threads, exclude_nodes=list(exclude_nodes), fine_tune_steps=fine_tune_steps)
        registered = None
        if register and outcome.chosen is not None:
            registered = publish.register_variant(Store(home), version, outcome)
    finally:
        clean(workdir)
    if registered is not None:
        report = registered.path / publish.REPORT
    else:
        report = _write_page(publish.standalone_page(outcome, f"{version.ref}: optimization"), None, home,
                             f"optimize-{version.name}")
    return {**outcome.to_dict(), "model": version.ref,
            "registered": registered.ref if registered is not None else None, "report": str(report)}


# ------------------------------------------------------------------------------------- checkpoints
def import_gguf(path: str | Path, out: str | Path) -> Any:
    """Turn a GGUF file (llama.cpp's format) into a Hugging Face safetensors checkpoint folder `out`: config.json,
    fp32 model.safetensors (the quantized weights dequantized) and the tokenizer with its chat template. Train or
    fine-tune from it with `model: {type: hf, path: out}`.

    Returns an `ImportedCheckpoint` (folder, architecture, parameters, bytes, vocab_size, chat_template). Raises
    InputError for a missing or non-GGUF file, an architecture that is not a causal language model transformers
    can read, and an `out` that exists and is not an empty folder.

    Example: `luodi.api.import_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")`.
    """
    from luodi.models.gguf import import_gguf as convert

    return convert(path, out)


# ------------------------------------------------------------------------------------------- serving
def serve(models: str | list[str], *, home: str | Path | None = None, api_keys_file: str | Path | None = None,
          admin_keys_file: str | Path | None = None, **settings: Any) -> int:
    """Serve registered models over HTTP until SIGTERM or Ctrl-C (which drain); returns the exit code.

    Args:
        models: references (`name@alias`, `name`, `name/3`) or package folders.
        home: the store folder (default `$LUODI_HOME` or `./.luodi`).
        api_keys_file, admin_keys_file: files with one key per line (also `LUODI_API_KEYS` / `LUODI_ADMIN_KEYS`).
        settings: any `luodi.serve.settings.ServeConfig` field: host, port, workers, max_batch_size, ...
    """
    from luodi.serve.server import run
    from luodi.serve.settings import make_config, read_keys

    config = make_config(api_keys=read_keys("LUODI_API_KEYS", Path(api_keys_file) if api_keys_file else None),
                         admin_keys=read_keys("LUODI_ADMIN_KEYS", Path(admin_keys_file) if admin_keys_file else None),
                         **settings)
    return run([models] if isinstance(models, str) else list(models), config, Path(home) if home else None)


def ui(*, home: str | Path | None = None, host: str = "127.0.0.1", port: int = 8080,
       api_keys_file: str | Path | None = None, admin_keys_file: str | Path | None = None) -> int:
    """The web UI over the store until SIGTERM or Ctrl-C: runs, models, reports (docs/ui.md); returns the exit code.

    Keys are `luodi serve`'s: read keys (`LUODI_API_KEYS`, `api_keys_file`) see, admin keys (`LUODI_ADMIN_KEYS`,
    `admin_keys_file`) also promote and roll back; a host other than loopback needs keys.
    """
    from luodi.serve.settings import make_config, read_keys
    from luodi.ui.server import run

    config = make_config(host=host, port=port,
                         api_keys=read_keys("LUODI_API_KEYS", Path(api_keys_file) if api_keys_file else None),
                         admin_keys=read_keys("LUODI_ADMIN_KEYS", Path(admin_keys_file) if admin_keys_file else None))
    return run(config, Path(home) if home else None)


# ---------------------------------------------------------------------------------- runs and models
def monitor(model: str, *, since: str | None = None, until: str | None = None, out: str | Path | None = None,
            home: str | Path | None = None, settings: MonitorConfig | None = None,
            alerts: AlertSettings | None = None) -> MonitorResult:
    """Drift of a model version's logged traffic against its training profile (docs/monitoring.md).

    Args:
        model: `name`, `name@alias` or `name/version`: whose profile, and whose rows of the prediction log.
        since, until: the window: ISO dates or times (UTC unless they say otherwise) or durations back from now
            ('30m', '2h', '7d'); open by default.
        out: where to write the monitoring page (none when None).
        home: the store folder (default `$LUODI_HOME` or `./.luodi`); the log is under its `predictions/`.
        settings: a `MonitorConfig` overriding the thresholds saved in the package's config.
        alerts: where alerts go (`monitor.alerts.alert_settings(webhook=...)`): drift, data quality and rules fire
            once per episode (state in the store's `alerts/`); delivered before this returns.

    Returns the tests per feature and output (`.to_dict()` is what `luodi monitor --json` prints).
    """
    from luodi.monitor.check import check

    store = Store(home)
    result = check(store, model, since=since, until=until, out=out, settings=settings)
    if alerts is not None and alerts.enabled:
        from luodi.monitor.alerts import Alerter, monitor_conditions

        alerter = Alerter(alerts, store.home, "monitor")
        conditions = monitor_conditions(result, alerts, result.live.get("metrics"))
        result.alerts = alerter.evaluate(result.model, result.version, conditions,
                                         {"window_rows": result.rows, "first": result.first, "last": result.last})
        alerter.close()
    return result


def feedback(model: str, data: str | Path, *, home: str | Path | None = None) -> dict[str, Any]:
    """Ground truth for served predictions: a CSV, JSONL or Parquet file of `request_id` (what the server answered
    with), `target` (or the model's target column) and optionally `row` (the record's position in its request).

    The labels are checked against the model version's outputs (an InputError names the file, row and column) and
    kept beside the prediction log, where `monitor` joins them by request id (docs/monitoring.md).
    """
    from luodi.monitor.feedback import labels_of, read_feedback_file, write_feedback
    from luodi.package import verify_package

    store = Store(home)
    version = store.resolve(model)
    table = read_feedback_file(data, labels_of(verify_package(version.path)))
    path = write_feedback(store.home, version.name, table)
    return {"model": version.name, "version": version.version, "accepted": table.num_rows, "file": str(path)}


def list_runs(*, name: str | None = None, limit: int = 50, home: str | Path | None = None) -> list[Run]:
    """Runs, newest first; a 'running' run whose process is gone reads 'stopped'."""
    return [observed(run) for run in Store(home).list_runs(name, limit)]


def show_run(run_id: str, *, home: str | Path | None = None) -> dict[str, Any]:
    store = Store(home)
    run = observed(store.get_run(run_id))
    return {**run.to_dict(), "history": store.epoch_history(run.id), "dir": str(store.run_dir(run.id))}


def list_models(*, home: str | Path | None = None) -> list[dict[str, Any]]:
    return Store(home).list_models()


def show_model(model: str, *, home: str | Path | None = None) -> list[ModelVersion]:
    """All versions of a model name, or the one version a reference points at."""
    store = Store(home)
    reference = parse_reference(model)
    if not reference.bare:
        return [store.resolve(reference)]
    return store.list_versions(model)


def promote(name: str, version: int, alias: str, *, reason: str = "", home: str | Path | None = None) -> dict[str, Any]:
    """Point `name@alias` at `version` (recorded in the event log)."""
    return Store(home).set_alias(name, alias, version, reason)


def rollback(name: str, alias: str, *, reason: str = "", home: str | Path | None = None) -> dict[str, Any]:
    """Point `name@alias` back at the version it pointed at before its last move (recorded in the event log)."""
    return Store(home).rollback_alias(name, alias, reason)


def history(model: str, *, home: str | Path | None = None) -> list[dict[str, Any]]:
    """The event log for a model: registrations and alias moves, newest first."""
    store = Store(home)
    store.list_versions(model)  # an unknown (or invalid) name is an error, not an empty history
    return store.model_events(model)

