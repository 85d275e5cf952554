"""`python -m retrace` is the `retrace` command."""
from .cli import main

main()
