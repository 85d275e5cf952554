"""The `retrace` command line.

    retrace record -o FILE [-m MODULE | -c CODE | SCRIPT] [ARGS...]
    retrace replay FILE
    retrace inspect FILE [--json]
    retrace install | uninstall

record and replay exec a fresh interpreter (retrace._run) with the recorded
hash seed; see _run.py for why.
"""
import argparse
import json
import os
import sys
import sysconfig

from .errors import TraceCorrupt

PTH_NAME = "retrace-hook.pth"
PTH_LINE = ("import os; os.environ.get('RETRACE_RECORDING') and "
            "__import__('retrace._hook')._hook.start()\n")
EXIT_ERROR = 2


def error(message):
    sys.stderr.write(f"retrace: error: {message}\n")
    sys.exit(EXIT_ERROR)


def exec_runner(args, hash_seed):
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "retrace._run", *args], env)


def cmd_record(ns):
    if ns.module:
        kind, target, args = "module", ns.module, ns.args
    elif ns.command is not None:
        kind, target, args = "command", ns.command, ns.args
    else:
        if not ns.args:
            error("record needs a script, -m MODULE or -c CODE")
        kind, target, args = "script", ns.args[0], ns.args[1:]
        if not os.path.isfile(target):
            error(f"no such script: {target}")
    seed = os.environ.get("PYTHONHASHSEED")
    if seed is None or seed == "random":
        seed = int.from_bytes(os.urandom(4), "little")
    exec_runner(["record", ns.output, kind, target, *args], seed)


def read_header(path):
    from . import _session
    if not os.path.exists(path):
        error(f"{path}: no such file")
    try:
        return _session.read_header(path)
    except (TraceCorrupt, OSError) as exc:
        error(str(exc))


def cmd_replay(ns):
    header = read_header(ns.trace)
    if tuple(header["version_info"][:2]) != tuple(sys.version_info[:2]):
        version = ".".join(map(str, header["version_info"]))
        error(f"{ns.trace} was recorded with Python {version} ({header['executable']}); "
              f"this is Python {sys.version.split()[0]}: replay it with Python "
              f"{'.'.join(map(str, header['version_info'][:2]))}")
    exec_runner(["replay", ns.trace], header["hash_seed"])


def cmd_inspect(ns):
    from . import _inspect
    read_header(ns.trace)
    try:
        summary = _inspect.summarize(ns.trace)
    except TraceCorrupt as exc:
        error(str(exc))
    if ns.json:
        json.dump(summary, sys.stdout, indent=2, default=repr)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(_inspect.render(summary))


def site_packages():
    return sysconfig.get_paths()["purelib"]


def cmd_install(ns):
    path = os.path.join(site_packages(), PTH_NAME)
    with open(path, "w") as f:
        f.write(PTH_LINE)
    print(f"installed {path}: RETRACE_RECORDING=FILE python ... now records to FILE")


def cmd_uninstall(ns):
    path = os.path.join(site_packages(), PTH_NAME)
    try:
        os.remove(path)
        print(f"removed {path}")
    except FileNotFoundError:
        print(f"not installed ({path} does not exist)")


def parser():
    p = argparse.ArgumentParser(prog="retrace", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("record", help="run a program and record it")
    r.add_argument("-o", "--output", required=True, help="the trace file to write")
    target = r.add_mutually_exclusive_group()
    target.add_argument("-m", dest="module", help="run a module as a script, like python -m")
    target.add_argument("-c", dest="command", help="run a program passed as a string")
    r.add_argument("args", nargs=argparse.REMAINDER, help="script and its arguments")
    r.set_defaults(func=cmd_record)

    rp = sub.add_parser("replay", help="re-run a recording offline")
    rp.add_argument("trace")
    rp.set_defaults(func=cmd_replay)

    i = sub.add_parser("inspect", help="summarize a recording")
    i.add_argument("trace")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_inspect)

    sub.add_parser("install", help="record when RETRACE_RECORDING is set (.pth hook)") \
        .set_defaults(func=cmd_install)
    sub.add_parser("uninstall", help="remove the .pth hook").set_defaults(func=cmd_uninstall)
    return p


def main(argv=None):
    ns = parser().parse_args(argv)
    if getattr(ns, "args", None) and ns.args[0] == "--":
        ns.args = ns.args[1:]
    ns.func(ns)
