"""Thread identifiers come from the OS: the main thread's, workers' (two of
them at once, then one more after they ended, which may reuse an ident),
and a forked child's, in log lines (%(thread)d, the usual production format)
and printed directly. Replay must show the recorded ones."""
import logging
import os
import sys
import threading

logging.basicConfig(stream=sys.stdout, format="%(process)d %(thread)d %(threadName)s %(message)s",
                    level=logging.INFO)
log = logging.getLogger("ids")


def work(n):
    me = threading.current_thread()
    log.info("worker %d: ident %d native %d", n, threading.get_ident(), threading.get_native_id())
    assert me.ident == threading.get_ident() and me.native_id == threading.get_native_id()


log.info("main: ident %d native %d", threading.get_ident(), threading.get_native_id())
assert threading.main_thread() is threading.current_thread()
pair = [threading.Thread(target=work, args=(n,)) for n in (1, 2)]
for t in pair:
    t.start()
for t in pair:
    t.join()
later = threading.Thread(target=work, args=(3,))
later.start()
later.join()
print("idents", sorted({t.ident for t in pair + [later]} | {threading.get_ident()}))
pid = os.fork()
if pid == 0:
    log.info("child: ident %d", threading.get_ident())
    os._exit(0)
os.waitpid(pid, 0)
