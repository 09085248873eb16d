"""The whole config as typed pydantic models: YAML in, `--set` overrides, one validation, typed object out.

`schema.py` holds the root model and the public names of the sections, which live in `base.py`, `inputs.py`,
`model.py`, `training.py` and `monitoring.py` (every model forbids unknown keys; errors name the dotted key path);
`keys.py` finds and sets dotted keys (`--set`, `search:`), `loading.py` reads and validates a file, `reference.py`
generates docs/config.md from the field descriptions (`python -m luodi.config` prints it).
Everything is importable from `luodi.config`.
"""

from luodi.config import schema
from luodi.config.keys import find_key, set_key, split_override
from luodi.config.loading import (
    IN_MEMORY,
    apply_overrides,
    format_validation_error,
    load_config,
    read_yaml,
    resolve_paths,
    take_frames,
    validate_config,
)
from luodi.config.reference import reference_markdown
from luodi.config.schema import *  # noqa: F403 - the schema's public names, listed once in its __all__

__all__ = ["IN_MEMORY", "apply_overrides", "find_key", "format_validation_error", "load_config", "read_yaml",
           "reference_markdown", "resolve_paths", "set_key", "split_override", "take_frames", "validate_config"]
__all__ += schema.__all__
