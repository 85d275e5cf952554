"""Threads that log through the logging module (whose handlers take an RLock)
to stdout and stderr: the interleaving of the lines depends on scheduling."""
import logging
import random
import sys
import threading
import time

fmt = logging.Formatter("%(threadName)s %(levelname)s %(name)s: %(message)s")
out = logging.StreamHandler(sys.stdout)
out.setFormatter(fmt)
err = logging.StreamHandler()        # stderr
err.setLevel(logging.WARNING)
err.setFormatter(fmt)
root = logging.getLogger()
root.addHandler(out)
root.addHandler(err)
root.setLevel(logging.DEBUG)


def work(n):
    log = logging.getLogger(f"app.part{n % 3}")
    for i in range(5):
        time.sleep(random.random() / 200)
        if i == 3 and n % 2:
            log.warning("step %d of %d is slow", i, n)
        else:
            log.info("step %d of %d", i, n)
    try:
        if n == 2:
            raise KeyError(n)
    except KeyError:
        log.exception("worker %d failed", n)
    log.debug("worker %d done", n)


threads = [threading.Thread(target=work, args=(n,), name=f"worker-{n}") for n in range(5)]
for t in threads:
    t.start()
logging.info("main waits")
for t in threads:
    t.join()
logging.info("all done")
