"""The `retrace` command line.

    retrace record -o FILE [-m MODULE | -c CODE | SCRIPT] [ARGS...]
    retrace replay FILE [--map RECORDED_DIR=LOCAL_DIR]
    retrace check FILE [--map RECORDED_DIR=LOCAL_DIR]
    retrace inspect FILE [--json]
    retrace debug FILE [--at-crash] [-c CMD]... [--pid N] [--map RECORDED_DIR=LOCAL_DIR]
    retrace dap [--port PORT]
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


def split_record_args(argv):
    """`record` options end at the program: -m MODULE, -c CODE or SCRIPT; all
    that follows belongs to the program, as with python itself."""
    output, i = None, 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-o", "--output") and i + 1 < len(argv):
            output, i = argv[i + 1], i + 2
        elif arg.startswith("--output="):
            output, i = arg.split("=", 1)[1], i + 1
        elif arg in ("-m", "-c") and i + 1 < len(argv):
            kind = "module" if arg == "-m" else "command"
            return output, kind, argv[i + 1], argv[i + 2:]
        elif arg == "--" and i + 1 < len(argv):
            return output, "script", argv[i + 1], argv[i + 2:]
        elif not arg.startswith("-"):
            return output, "script", arg, argv[i + 1:]
        else:
            error(f"record: unexpected argument {arg!r}")
    return output, None, None, []


def cmd_record(ns):
    output, kind, target, args = split_record_args(ns.args)
    if output is None:
        error("record needs -o FILE")
    if kind is None:
        error("record needs a script, -m MODULE or -c CODE")
    if kind == "script" and not os.path.isfile(target):
        error(f"no such script: {target}")
    seed = os.environ.get("PYTHONHASHSEED")
    if seed is None or seed == "random":
        seed = int.from_bytes(os.urandom(4), "little")
    exec_runner(["record", output, kind, target, *args], seed)


def read_header(path):
    from . import _session
    if not os.path.exists(path):
        error(f"{path}: no such file")
    try:
        return _session.read_header(path)
    except (TraceCorrupt, OSError) as exc:
        error(str(exc))


def cmd_replay(ns):
    """replay and check: run the recording in retrace._run with its hash seed."""
    header = read_header(ns.trace)
    if tuple(header["version_info"][:2]) != tuple(sys.version_info[:2]):
        version = ".".join(map(str, header["version_info"]))
        error(f"{ns.trace} was recorded with Python {version} ({header['executable']}); "
              f"this is Python {sys.version.split()[0]}: replay it with Python "
              f"{'.'.join(map(str, header['version_info'][:2]))}")
    for m in ns.map:
        if "=" not in m:
            error(f"--map takes RECORDED_DIR=LOCAL_DIR, not {m!r}")
    trace = ns.trace if ns.pid is None else f"{ns.trace}.{ns.pid}"
    if ns.pid is not None:
        read_header(trace)
    exec_runner([ns.cmd, trace, *ns.map], header["hash_seed"])


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


def cmd_debug(ns):
    from . import _debug_cli
    sys.exit(_debug_cli.main(ns))


def cmd_dap(ns):
    from . import dap
    if ns.port is None:
        dap.serve_stdio()
    else:
        dap.serve_port(ns.port)


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

    r = sub.add_parser("record", help="run a program and record it",
                       usage="retrace record -o FILE [-m MODULE | -c CODE | SCRIPT] [ARGS...]")
    r.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_record)

    for name, text in (("replay", "re-run a recording offline"),
                       ("check", "is the recorded failure fixed? replay against the current code: "
                                 "exit 0 fixed, 1 reproduced, 3 diverged before the crash, "
                                 "4 the recorded run did not fail")):
        rp = sub.add_parser(name, help=text, description=text)
        rp.add_argument("trace")
        rp.add_argument("--map", action="append", default=[], metavar="RECORDED_DIR=LOCAL_DIR",
                        help="the program's code is in LOCAL_DIR here (repeatable); without it, "
                             "a copy of the main script under the working directory is found")
        rp.add_argument("--pid", type=int,
                        help="replay the forked child with this pid (its trace is TRACE.PID)")
        rp.set_defaults(func=cmd_replay)

    i = sub.add_parser("inspect", help="summarize a recording")
    i.add_argument("trace")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_inspect)

    d = sub.add_parser("debug", help="debug a recording, forwards and backwards (pdb-like)",
                       description="A pdb-like debugger over a recording, with reverse moves "
                                   "(rs, rn, rr, rc), crash and goto N; see docs/debugger.md. "
                                   "Commands come from stdin when it is not a terminal.")
    d.add_argument("trace")
    d.add_argument("--at-crash", action="store_true",
                   help="start where the uncaught exception was raised")
    d.add_argument("-c", dest="command", action="append", default=[], metavar="CMD",
                   help="run this debugger command first (repeatable)")
    d.add_argument("--pid", type=int,
                   help="debug the forked child with this pid (its trace is TRACE.PID)")
    d.add_argument("--map", action="append", default=[], metavar="RECORDED_DIR=LOCAL_DIR",
                   help="the program's code is in LOCAL_DIR here (repeatable)")
    d.set_defaults(func=cmd_debug)

    d = sub.add_parser("dap", help="the Debug Adapter Protocol server (VS Code), on stdio")
    d.add_argument("--port", type=int, help="serve one client on 127.0.0.1:PORT instead")
    d.set_defaults(func=cmd_dap)

    sub.add_parser("install", help="record when RETRACE_RECORDING is set (.pth hook)") \
        .set_defaults(func=cmd_install)
    sub.add_parser("uninstall", help="remove the .pth hook").set_defaults(func=cmd_uninstall)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["record"] and argv[1:2] not in (["-h"], ["--help"]):
        # argparse cannot leave the program's own options alone
        return cmd_record(argparse.Namespace(args=argv[1:]))
    ns = parser().parse_args(argv)
    ns.func(ns)
