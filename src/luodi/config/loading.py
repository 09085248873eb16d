"""Reading a config: YAML (`safe_load` only), `--set key=value` overrides, one validation with errors that name
the file and the dotted key, then paths made absolute against the config file's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from luodi.config.schema import FEATURE_TYPES, LuodiConfig, TextFeature
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
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            path = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                node = _list_item(node, part, path)
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise InputError(f"--set {key}: {path} is a value, not a section")
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, key)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise InputError(f"--set {key}: {'.'.join(parts[:-1])} is a value, not a section")
    return raw


def split_override(override: str) -> tuple[str, list[str], str]:
    """`KEY=VALUE` into the key, its parts and the value text. Parts are separated by dots; a part in double or
    single quotes may hold dots and '=' (`input_features."x.box".type=category`)."""
    parts, current, quote, index = [], "", "", len(override)
    for position, char in enumerate(override):
        if quote:
            if char == quote:
                quote = ""
            else:
                current += char
        elif char in "\"'" and not current:
            quote = char
        elif char == ".":
            parts.append(current)
            current = ""
        elif char == "=":
            index = position
            break
        else:
            current += char
    key = override[:index].strip()
    if quote:
        raise InputError(f"--set {override!r}: unclosed {quote} in the key")
    parts.append(current)
    parts = [part.strip() for part in parts]
    if index == len(override) or not key:
        raise InputError(f"--set {override!r}: expected KEY=VALUE, e.g. trainer.epochs=20")
    if not all(parts):
        raise InputError(f"--set {key}: empty key part; quote a name that contains dots, e.g. "
                         'input_features."x.box".type=category')
    return key, parts, override[index + 1:]


def _list_index(items: list[Any], part: str, path: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(items) <= int(part) < len(items):
        raise InputError(f"--set {path}: index {part!r} is out of range (the list has {len(items)} items)")
    return int(part)


def _list_item(items: list[Any], part: str, path: str) -> Any:
    """A list element by index, or an input feature by its name (`input_features.age.type=category`)."""
    if part.lstrip("-").isdigit():
        return items[_list_index(items, part, path)]
    for item in items:
        if isinstance(item, dict) and item.get("name") == part:
            return item
    names = [item["name"] for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)]
    dotted = [name for name in names if name.startswith(f"{part}.")]
    section = path.rpartition(".")[0]
    hint = (f"; quote a name that contains dots, {section}.\"{dotted[0]}\", or give its index, "
            f"{section}.{names.index(dotted[0])}" if dotted else did_you_mean(part, names))
    raise InputError(f"--set {path}: no list item named {part!r}{hint}")


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
    features = [feature.model_copy(update={"checkpoint": absolute(feature.checkpoint)})
                if isinstance(feature, TextFeature) else feature for feature in config.input_features]
    text = config.target.text  # text_generation's tokenizer folder (validation fills it from model.path)
    text = text.model_copy(update={"checkpoint": absolute(text.checkpoint)})
    target = config.target.model_copy(update={"text": text})
    return config.model_copy(update={"data": data.model_copy(update=updates), "input_features": features,
                                     "target": target,
                                     "model": config.model.model_copy(update={"path": absolute(config.model.path)})})
