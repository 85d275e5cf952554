"""Retrace: record a Python run once, replay and debug it deterministically.

Importing this package is cheap on purpose: the .pth hook imports it in every
process of an environment where `retrace install` was run.
"""
from .errors import ReplayDivergence, RetraceError, TraceCorrupt

__version__ = "0.1.0"
__all__ = ["ReplayDivergence", "RetraceError", "TraceCorrupt", "__version__"]
