"""`python -m luodi.config` prints the config reference (docs/config.md)."""

from luodi.config.reference import reference_markdown

print(reference_markdown())
