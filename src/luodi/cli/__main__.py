"""`python -m luodi.cli` is the `luodi` command."""

from luodi.cli import main

main()
