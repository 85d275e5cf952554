"""What the benchmarks share: running commands with a clean environment,
spreads over rounds, reading traces, throwaway venvs with the hook, the
machine's description and the report's number format."""
import datetime
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORKLOADS = BENCH / "workloads"
PY = sys.executable


def clean_env(**extra):
    """This environment without any Retrace setting, with a fixed hash seed
    so that plain and recorded runs hash alike."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRACE_")}
    env["PYTHONHASHSEED"] = "1"
    env.update(extra)
    return env


def run(cmd, env=None, cwd=None):
    """Run cmd; returns (stdout, stderr, wall seconds). Fails on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env or clean_env(), cwd=cwd,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}: {' '.join(map(str, cmd))}\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout, proc.stderr, seconds


def retrace(*args):
    return [PY, "-m", "retrace", *args]


def spread(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def differences(a, b):
    return spread([y - x for x, y in zip(a, b)])


def ratios(a, b):
    return spread([y / x for x, y in zip(a, b)])


def progress(message):
    print(message, file=sys.stderr, flush=True)


# -- trace files ---------------------------------------------------------------

def inspect(trace):
    out, _, _ = run(retrace("inspect", "--json", trace))
    return json.loads(out)


def chunk_totals(trace):
    """Payload bytes of all chunks, stored and raw (docs/trace-format-stream.md)."""
    data = Path(trace).read_bytes()
    header_len, = struct.unpack_from("<I", data, 12)
    pos, stored, raw = 20 + header_len, 0, 0
    while pos + 36 <= len(data):
        magic, _flags, stored_len, raw_len = struct.unpack_from("<4I", data, pos)
        if magic != 0x4B435452:
            raise ValueError(f"{trace}: no chunk at offset {pos}")
        stored, raw, pos = stored + stored_len, raw + raw_len, pos + 36 + stored_len
    return stored, raw


# -- interpreters ----------------------------------------------------------------

def make_venvs(tmp, with_packages=False):
    """Two throwaway venvs of this interpreter, identical but for the .pth
    hook that `retrace install` writes into one of them.

    Without packages, neither has Retrace installed: with RETRACE_RECORDING
    unset the hook never imports it. with_packages adds this environment's
    site-packages (Retrace, Flask, gunicorn ...) to both, through a .pth file
    that sorts before the hook's."""
    pythons = {}
    for name in ("bare", "hooked"):
        run([PY, "-m", "venv", "--without-pip", tmp / name])
        pythons[name] = tmp / name / "bin" / "python"
        if with_packages:
            site, _, _ = run([pythons[name], "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
            Path(site.strip(), "bench-packages.pth").write_text(
                f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    run([pythons["hooked"], "-m", "retrace", "install"],
        env=clean_env(PYTHONPATH=str(REPO / "src")))
    return pythons


# -- the report ------------------------------------------------------------------

def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def stamp():
    """When, at which commit and under what load a measurement started."""
    commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit or "unknown", "load_average": os.getloadavg()[0]}


def fmt(s, digits=0):
    """median (min .. max), never showing "-0"."""
    def number(x):
        return f"{round(x, digits) + 0.0:.{digits}f}"
    return f"{number(s['median'])} ({number(s['min'])} .. {number(s['max'])})"
