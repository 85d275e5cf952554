"""`retrace debug`: a pdb-like terminal debugger over a recording, with
reverse moves (docs/debugger.md).

    retrace debug FILE [--at-crash] [-c CMD]... [--pid N] [--map RECORDED=LOCAL]

Commands come from the terminal, or from stdin when it is not one; -c
commands run first, so a session can be scripted like pdb's. The program's
own output (recorded, replayed) is printed when the replay first passes it.
"""
import cmd
import linecache
import os
import signal
import sys

from .debugger import Debugger, DebuggerError

EXIT_ERROR = 2
LIST_LINES = 11


class DebugShell(cmd.Cmd):
    doc_header = "Commands (help COMMAND for more):"

    def __init__(self, dbg, stdin=None, stdout=None):
        super().__init__(stdin=stdin, stdout=stdout)
        self.dbg = dbg
        self.use_rawinput = self.stdin.isatty()
        self.frame_index = 0        # selected with up/down
        self.thread = None          # selected with thread N (None: the stop's)
        self.list_from = None       # where a plain `list` continues
        self.catch = "off"          # exception stops: see do_catch
        self.update_prompt()

    # -- output -------------------------------------------------------------

    def say(self, text=""):
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def error(self, text):
        self.say(f"*** {text}")

    def update_prompt(self):
        self.prompt = f"(retrace {self.dbg.stop.step}) "

    def source_line(self, file, line):
        return linecache.getline(file, line).strip() if file and line else ""

    def show_stop(self, stop):
        self.frame_index, self.thread, self.list_from = 0, None, None
        kind = stop.exception[0] if stop.exception else ""
        message = f"{kind}: {stop.exception[1]}" if stop.exception else ""
        if stop.reason == "end":
            status = "" if stop.exit_status is None else f", exit status {stop.exit_status}"
            self.say(f"--End-- the program ended after {stop.step} steps{status}"
                     + (f", with the uncaught {message}" if message else ""))
            return
        if stop.reason in ("crash", "exception"):
            self.say(f"--{stop.reason.capitalize()}-- {message}")
        elif stop.reason in ("start", "pause"):
            self.say(f"--{stop.reason.capitalize()}--")
        elif stop.breakpoint_ids:
            self.say(f"Breakpoint {', '.join(map(str, stop.breakpoint_ids))}")
        self.show_location(stop.file, stop.line, stop.function)

    def show_location(self, file, line, function):
        self.say(f"> {file}({line}){function}()")
        self.say(f"-> {self.source_line(file, line)}")

    def move(self, action, *args):
        """Ctrl-C during a move pauses it (forward moves stop where they are)."""
        previous = signal.signal(signal.SIGINT, lambda *_: self.dbg.pause())
        try:
            stop = action(*args)
        except DebuggerError as exc:
            self.error(exc)
            return
        finally:
            signal.signal(signal.SIGINT, previous)
        self.show_stop(stop)

    def postcmd(self, stop, line):
        self.update_prompt()
        return stop

    def emptyline(self):
        pass                        # a blank line repeats nothing: scripts stay predictable

    def default(self, line):
        self.error(f"unknown command {line.split()[0]!r} (help lists them)")

    # -- moves ---------------------------------------------------------------

    def do_step(self, arg):
        """s(tep): run to the next line, stepping into calls."""
        self.move(self.dbg.step)

    def do_next(self, arg):
        """n(ext): run to the next line of this function (or its caller)."""
        self.move(self.dbg.next)

    def do_return(self, arg):
        """r(eturn): run until this function returns; stop at the caller's next line."""
        self.move(self.dbg.step_out)

    def do_continue(self, arg):
        """c(ontinue): run to the next breakpoint, the crash or the end."""
        self.move(self.dbg.cont)

    def do_rstep(self, arg):
        """rs, rstep: back to the previous line of this thread (into calls)."""
        self.move(self.dbg.reverse_step)

    def do_rnext(self, arg):
        """rn, rnext: back to the previous line of this function (or its caller)."""
        self.move(self.dbg.reverse_next)

    def do_rreturn(self, arg):
        """rr, rreturn: back to the line that called this function."""
        self.move(self.dbg.reverse_step_out)

    def do_rcontinue(self, arg):
        """rc, rcontinue: back to the previous breakpoint hit (or the start)."""
        self.move(self.dbg.reverse_continue)

    def do_crash(self, arg):
        """crash: go to where the uncaught exception was raised."""
        self.move(self.dbg.to_crash)

    def do_goto(self, arg):
        """goto N: go to step N (the Nth line the program ran, from 0)."""
        try:
            step = int(arg)
        except ValueError:
            self.error("goto takes a step number")
            return
        self.move(self.dbg.goto, step)

    CATCH = {"off": "only at the crash (an uncaught exception)",
             "raised": "wherever an exception is raised, caught or not",
             "mine": "wherever your code raises an exception (not the standard library, "
                     "site-packages or Retrace)"}

    def do_catch(self, arg):
        """catch [raised | mine | off]: where continue (and rc) stop for exceptions:
        every raise, raises in your own code only, or only the crash (the
        default). Without an argument, say which."""
        mode = arg.strip() or self.catch
        if mode not in self.CATCH:
            self.error("catch takes raised, mine or off")
            return
        self.catch = mode
        self.dbg.set_exception_breakpoints(raised=mode != "off", user_code_only=mode == "mine")
        self.say(f"Exceptions stop {self.CATCH[mode]}")

    do_s, do_n, do_r, do_c, do_cont = do_step, do_next, do_return, do_continue, do_continue
    do_rs, do_rn, do_rr, do_rc = do_rstep, do_rnext, do_rreturn, do_rcontinue

    # -- breakpoints -----------------------------------------------------------

    def _parse_location(self, text):
        """FILE:LINE, LINE (in the current file) or a function name."""
        file, sep, line = text.rpartition(":")
        if sep and line.strip().isdigit():
            return os.path.abspath(os.path.expanduser(file.strip())), int(line), None
        if text.isdigit():
            frame = self.selected_frame()
            if frame is None:
                raise DebuggerError("no current file: give FILE:LINE")
            return frame.file, int(text), None
        return None, None, text

    def _break(self, arg, temporary):
        if not arg.strip():
            self.list_breakpoints()
            return
        location, _, condition = arg.partition(",")
        condition = condition.strip() or None
        try:
            file, line, function = self._parse_location(location.strip())
            kind = "Temporary breakpoint" if temporary else "Breakpoint"
            if function:
                bp_id = self.dbg.add_function_breakpoint(function, condition=condition,
                                                         temporary=temporary)
                self.say(f"{kind} {bp_id} at function {function}")
            else:
                bp_id = self.dbg.add_breakpoint(file, line, condition=condition,
                                                temporary=temporary)
                self.say(f"{kind} {bp_id} at {file}:{line}")
        except DebuggerError as exc:
            self.error(exc)

    def do_break(self, arg):
        """b(reak) [FILE:LINE | LINE | FUNCTION] [, CONDITION]: set a breakpoint;
        without an argument, list them."""
        self._break(arg, temporary=False)

    def do_tbreak(self, arg):
        """tbreak [FILE:LINE | LINE | FUNCTION] [, CONDITION]: a breakpoint removed
        when first hit."""
        self._break(arg, temporary=True)

    def list_breakpoints(self):
        bps = self.dbg.breakpoints()
        if not bps:
            self.say("No breakpoints.")
        for bp in bps:
            where = f"{bp['file']}:{bp['line']}" if bp["kind"] == "line" else bp["name"]
            extra = f"  if {bp['condition']}" if bp["condition"] else ""
            self.say(f"{bp['id']:<4} {'tbreak' if bp['temporary'] else 'break ':<6} {where}{extra}")

    def do_clear(self, arg):
        """cl(ear) [ID ... | FILE:LINE]: remove breakpoints (all without argument)."""
        bps = self.dbg.breakpoints()
        if not arg.strip():
            doomed = [bp["id"] for bp in bps]
        elif ":" in arg:
            file, line, _ = self._parse_location(arg.strip())
            doomed = [bp["id"] for bp in bps if bp["kind"] == "line" and bp["file"] == file
                      and bp["line"] == line]
        else:
            try:
                doomed = [int(word) for word in arg.split()]
            except ValueError:
                self.error("clear takes breakpoint numbers or FILE:LINE")
                return
        known = {bp["id"] for bp in bps}
        for bp_id in doomed:
            if bp_id in known:
                self.dbg.remove_breakpoint(bp_id)
                self.say(f"Deleted breakpoint {bp_id}")
            else:
                self.error(f"no breakpoint {bp_id}")

    do_b, do_cl = do_break, do_clear

    # -- inspection ---------------------------------------------------------------

    def frames(self):
        try:
            return self.dbg.frames(self.thread)
        except DebuggerError as exc:
            self.error(exc)
            return []

    def selected_frame(self):
        frames = self.frames()
        return frames[self.frame_index] if self.frame_index < len(frames) else None

    def _print(self, arg, mode):
        if not arg.strip():
            self.error(f"{'pp' if mode == 'pprint' else 'p'} takes an expression")
            return
        try:
            var = self.dbg.evaluate(arg, self.frame_index, self.thread, mode=mode, limit=100000)
        except DebuggerError as exc:
            self.error(exc)
            return
        if var.output:
            self.stdout.write(var.output)
        if var.type == "error":
            self.error(var.value)
        else:
            self.say(var.value)

    def do_p(self, arg):
        """p EXPRESSION: print its value (evaluated in a throwaway copy of the
        replay: nothing it does changes the replay; external calls are refused)."""
        self._print(arg, "repr")

    def do_pp(self, arg):
        """pp EXPRESSION: pretty-print its value."""
        self._print(arg, "pprint")

    def do_where(self, arg):
        """w(here), bt: the stack, oldest frame first; > marks the selected one."""
        frames = self.frames()
        if not frames:
            self.say("(no frames: the program is not running here)")
        for frame in reversed(frames):
            marker = ">" if frame.index == self.frame_index else " "
            self.say(f"{marker} {frame.file}({frame.line}){frame.function}()")
            self.say(f"-> {self.source_line(frame.file, frame.line)}")

    def _select(self, index):
        frames = self.frames()
        if not 0 <= index < len(frames):
            self.error("no frame there: " + ("oldest frame" if index > 0 else "newest frame"))
            return
        self.frame_index, self.list_from = index, None
        frame = frames[index]
        self.show_location(frame.file, frame.line, frame.function)

    def do_up(self, arg):
        """u(p) [COUNT]: select an older frame."""
        self._select(self.frame_index + (int(arg) if arg.strip().isdigit() else 1))

    def do_down(self, arg):
        """d(own) [COUNT]: select a newer frame."""
        self._select(self.frame_index - (int(arg) if arg.strip().isdigit() else 1))

    def _list_lines(self, file, first, last, current):
        marks = {bp["line"] for bp in self.dbg.breakpoints()
                 if bp["kind"] == "line" and bp["file"] == os.path.abspath(file)}
        lines = linecache.getlines(file)
        if not lines:
            self.error(f"cannot read {file}")
            return
        for n in range(max(first, 1), min(last, len(lines)) + 1):
            tag = ("B" if n in marks else " ") + ("->" if n == current else "  ")
            self.say(f"{n:4d} {tag} {lines[n - 1].rstrip()}")
        self.list_from = min(last, len(lines)) + 1

    def do_list(self, arg):
        """l(ist) [FIRST[, LAST] | .]: source around the current line; again to go on."""
        frame = self.selected_frame()
        if frame is None:
            self.error("no source here")
            return
        if arg.strip() and arg.strip() != ".":
            try:
                bounds = [int(x) for x in arg.split(",")]
            except ValueError:
                self.error("list takes FIRST[, LAST]")
                return
            first = bounds[0]
            last = bounds[1] if len(bounds) > 1 else first + LIST_LINES - 1
        elif self.list_from and arg.strip() != ".":
            first, last = self.list_from, self.list_from + LIST_LINES - 1
        else:
            first = max(1, frame.line - LIST_LINES // 2)
            last = first + LIST_LINES - 1
        self._list_lines(frame.file, first, last, frame.line)

    def do_longlist(self, arg):
        """ll, longlist: the whole source of the current function."""
        frame = self.selected_frame()
        if frame is None:
            self.error("no source here")
            return
        self._list_lines(frame.file, frame.first_line, frame.last_line, frame.line)

    def do_thread(self, arg):
        """thread [N]: list the threads, or select thread N for where/p/list."""
        try:
            threads = self.dbg.threads()
        except DebuggerError as exc:
            self.error(exc)
            return
        current = self.dbg.stop.thread if self.thread is None else self.thread
        if not arg.strip():
            for tid, name in threads:
                self.say(f"{'*' if tid == current else ' '} {tid} {name}")
            return
        try:
            tid = int(arg)
        except ValueError:
            self.error("thread takes a thread number")
            return
        if tid not in {t for t, _ in threads}:
            self.error(f"no thread {tid} here")
            return
        self.thread = None if tid == self.dbg.stop.thread else tid
        self.frame_index, self.list_from = 0, None
        frame = self.selected_frame()
        if frame:
            self.show_location(frame.file, frame.line, frame.function)

    def do_info(self, arg):
        """info: the current step, thread, event index and stop reason."""
        stop = self.dbg.stop
        total = self.dbg.total_steps
        self.say(f"step {stop.step}" + (f" of {total}" if total is not None else "")
                 + f", thread {stop.thread}, event index {stop.event_index}, "
                 f"stopped by {stop.reason}")

    def do_quit(self, arg):
        """q(uit): leave the debugger."""
        return True

    do_w, do_bt, do_u, do_d, do_l, do_ll = do_where, do_where, do_up, do_down, do_list, do_longlist
    do_q = do_exit = do_EOF = do_quit


def _parse_maps(maps):
    pairs = {}
    for m in maps:
        recorded, sep, local = m.partition("=")
        if not sep:
            raise DebuggerError(f"--map takes RECORDED_DIR=LOCAL_DIR, not {m!r}")
        pairs[recorded] = local
    return pairs


def main(ns):
    shell = None

    def show_output(stream, text):
        (shell.stdout if shell else sys.stdout).write(text)

    try:
        dbg = Debugger(ns.trace, pid=ns.pid, path_map=_parse_maps(ns.map), on_output=show_output)
    except DebuggerError as exc:
        sys.stderr.write(f"retrace: error: {exc}\n")
        return EXIT_ERROR
    try:
        shell = DebugShell(dbg)
        changed = dbg.source_changed()
        if changed:
            shell.say("retrace: warning: source files changed since the recording "
                      "(the replay may diverge):\n" + "\n".join(f"  {path}" for path in changed))
        shell.show_stop(dbg.stop)
        if ns.at_crash:
            shell.onecmd("crash")
            shell.update_prompt()
        for command in ns.command:
            if shell.onecmd(command):
                return 0
            shell.update_prompt()
        while True:
            try:
                shell.cmdloop()
                return 0
            except KeyboardInterrupt:
                shell.say("\n--KeyboardInterrupt--")
    finally:
        dbg.close()
