"""Build the C engine, retrace._engine. Everything else is declared in pyproject.toml."""
import glob
import os

from setuptools import Extension, setup

cflags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"]
# RETRACE_CFLAGS lets `make asan` add sanitizer flags without editing this file.
cflags += os.environ.get("RETRACE_CFLAGS", "").split()
ldflags = os.environ.get("RETRACE_LDFLAGS", "").split()

setup(
    ext_modules=[
        Extension(
            "retrace._engine",
            sources=sorted(glob.glob("csrc/*.c")),
            depends=glob.glob("csrc/*.h"),
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            libraries=["z", "pthread"],
        )
    ]
)
