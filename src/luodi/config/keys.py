"""Dotted config keys, as `--set` and `search:` write them: split (`input_features."x.box".type`), found in a
config, set in a raw one. List items are found by index or, for input features, by name."""

from __future__ import annotations

from typing import Any

from luodi.errors import InputError, did_you_mean


def set_key(raw: dict[str, Any], key: str, parts: list[str], value: Any) -> None:
    """Set the value at a dotted key (its `parts` from `split_override`); missing sections are created."""
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


def find_key(config: dict[str, Any], key: str) -> Any:
    """The value at a dotted `--set` key of a config (a validated one's `model_dump`, where every key is present);
    a key that names nothing is an `InputError` naming it, with the closest key."""
    node: Any = config
    parts = split_override(f"{key}=")[1]
    for depth, part in enumerate(parts):
        path = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            try:
                node = _list_item(node, part, path)
            except InputError as error:
                raise InputError(str(error).removeprefix("--set ")) from None
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict):
            section = ".".join(parts[:depth]) or "the config"
            raise InputError(f"no key {part!r} in {section}{did_you_mean(part, [str(name) for name in node])}")
        else:
            raise InputError(f"{'.'.join(parts[:depth])} is a value, not a section")
    return node


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
