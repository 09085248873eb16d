"""`python -m luodi` is the `luodi` command; torchrun starts ranks with `torchrun ... -m luodi train CONFIG`."""

from luodi.cli import main

main()
