"""A package run with `python -m pkgdemo ARGS...`."""
