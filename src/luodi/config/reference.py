"""The config reference (docs/config.md), generated from the schema's field descriptions.

The sections are found by walking the config tree from `LuodiConfig` (nested models, and each member of a list
of tagged unions such as `input_features`), so a new config class shows up here without being listed.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel

from luodi.config.schema import LuodiConfig


def sections(model: type[BaseModel], title: str = "top level",
             prefix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """(dotted title, model) for `model` and every config model below it, depth first in field order."""
    yield title, model
    for name, field in model.model_fields.items():
        for label, child in _models(field.annotation):
            path = f"{prefix}{name}{label}"
            yield from sections(child, path, f"{path}.")


def _models(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The config models an annotation holds, each with its title suffix ('[] (type: image)' for list members)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models(get_args(annotation)[0])
    if origin is list:
        return [(f"[] (type: {member.model_fields['type'].default})" if "type" in member.model_fields else "[]",
                 member) for _, member in _models(get_args(annotation)[0])]
    if origin is dict:  # `search:`: any key (a dotted config key) to a model
        return [(".<key>", member) for _, member in _models(get_args(annotation)[1])]
    if origin in (typing.Union, types.UnionType):
        return [found for argument in get_args(annotation) for found in _models(argument)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    return []


def reference_markdown() -> str:
    """The config reference, generated from the field descriptions (docs/config.md)."""
    out = ["# Config reference", "", "Generated from `src/luodi/config/schema.py` by `python -m luodi.config`; "
           "a test keeps this file in sync.", ""]
    for title, model in sections(LuodiConfig):
        out += [f"## `{title}`", ""]
        if model.__doc__:
            out += [model.__doc__.strip().splitlines()[0], ""]
        out += ["| key | default | description |", "|---|---|---|"]
        for name, field in model.model_fields.items():
            if field.is_required():
                default = "required"
            elif field.default_factory is not None:
                produced = field.default_factory()  # type: ignore[call-arg]
                default = "(section)" if isinstance(produced, BaseModel) else f"`{produced}`"
            else:
                default = f"`{field.default}`"
            out.append(f"| `{name}` | {default} | {field.description or ''} |")
        out.append("")
    return "\n".join(out)
