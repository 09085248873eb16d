"""Reading a config: YAML (`safe_load` only), `--set key=value` overrides, one validation with errors that name
the file and the dotted key, then paths made absolute against the config file's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from luodi.config.inputs import FEATURE_TYPES, TextFeature
from luodi.config.keys import set_key, split_override
from luodi.config.schema import LuodiConfig
from luodi.errors import InputError, did_you_mean

IN_MEMORY = "<DataFrame>"  # data.train (validation, test) of a run whose rows were passed in memory
DATA_FILES = ("train", "validation", "test")


def take_frames(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A raw config whose `data.train` (or validation, test) holds rows in memory (a DataFrame, an Arrow table,
    records) → the config with those keys set to `IN_MEMORY`, and the rows by split; the caller's dict is kept."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return raw, {}
    frames = {key: data[key] for key in DATA_FILES if data.get(key) is not None and not isinstance(data[key], str)
              and not isinstance(data[key], Path)}
    if not frames:
        return raw, {}
    return {**raw, "data": {**data, **dict.fromkeys(frames, IN_MEMORY)}}, frames


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply `key.path=value` overrides; values parse as YAML scalars/lists (`lr=3e-4`, `sizes=[64,32]`)."""
    for override in overrides:
        key, parts, text = split_override(override)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as error:
            raise InputError(f"--set {key}: value {text!r} is not valid YAML: {error}") from None
        set_key(raw, key, parts, value)
    return raw


def format_validation_error(error: ValidationError, source: str) -> str:
    """One message per problem, each naming the dotted key path."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if part not in FEATURE_TYPES]
        path = ".".join(loc) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key" + _key_hint(error, item["loc"])
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("union_tag_invalid",) and not (
            item["type"] == "value_error" and isinstance(item["input"], dict)
        ):  # a section-level check names its keys itself; echoing the whole section would bury the message
            shown = repr(item["input"])  # a DataFrame or a long list is named by its start, not printed whole
            message = f"{message} (got {shown if len(shown) <= 200 else shown[:200] + '...'})"
        lines.append(f"{path}: {message}")
    head = f"{source}: invalid config" if len(lines) > 1 else f"{source}: invalid config:"
    if len(lines) == 1:
        return f"{head} {lines[0]}"
    return head + "\n  " + "\n  ".join(lines)


def _key_hint(error: ValidationError, loc: tuple[Any, ...]) -> str:
    """Suggest the closest valid key for a mistyped one."""
    model: Any = LuodiConfig
    for part in loc[:-1]:
        if isinstance(part, int) or part in FEATURE_TYPES:
            if part in FEATURE_TYPES:
                model = FEATURE_TYPES[part]
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        annotation = getattr(field, "annotation", None)
        if annotation is None or not hasattr(annotation, "model_fields"):
            if part == "input_features":
                continue
            return ""
        model = annotation
    if not hasattr(model, "model_fields"):
        return ""
    return did_you_mean(str(loc[-1]), list(model.model_fields))


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML file with safe_load only; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: config is not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML: {error}") from None
    if raw is None:
        raise InputError(f"{path}: config file is empty")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the top level of a config must be a mapping of keys, got {type(raw).__name__}")
    return raw


def validate_config(raw: dict[str, Any], source: str = "config") -> LuodiConfig:
    try:
        return LuodiConfig.model_validate(raw)
    except ValidationError as error:
        raise InputError(format_validation_error(error, source)) from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LuodiConfig:
    """Read, override and validate a config file; data paths become absolute (relative to the file)."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides)
    config = validate_config(raw, str(path))
    return resolve_paths(config, path.resolve().parent)


def resolve_paths(config: LuodiConfig, base: Path) -> LuodiConfig:
    """Data files, a checkpoint folder and tokenizer folders relative to `base` (the config file's folder)."""
    def absolute(value: str | None) -> str | None:
        if value is None or value == IN_MEMORY:
            return value
        return str((base / value).resolve())

    data = config.data
    updates = {key: absolute(value) for key, value in
               (("train", data.train), ("validation", data.validation), ("test", data.test))}
    features = [feature.model_copy(update={"checkpoint": absolute(feature.checkpoint),
                                           "encoder": absolute(feature.encoder)})
                if isinstance(feature, TextFeature) else feature for feature in config.input_features]
    text = config.target.text  # text_generation's tokenizer folder (validation fills it from model.path)
    text = text.model_copy(update={"checkpoint": absolute(text.checkpoint)})
    target = config.target.model_copy(update={"text": text})
    return config.model_copy(update={"data": data.model_copy(update=updates), "input_features": features,
                                     "target": target,
                                     "model": config.model.model_copy(update={"path": absolute(config.model.path)}),
                                     "runtime": config.runtime.model_copy(
                                         update={"checkpoint_dir": absolute(config.runtime.checkpoint_dir)})})
