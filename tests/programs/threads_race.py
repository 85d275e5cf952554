"""An unsynchronised data race: threads increment a shared counter without a
lock. The switch interval is tiny and the increment calls a function between
reading and writing the counter (a plain `counter += 1` is one uninterruptible
step under the 3.11+ GIL), so updates are lost and the total varies from run
to run. Replay must reproduce the recorded total or stop with a divergence."""
import sys
import threading

sys.setswitchinterval(1e-5)
counter = 0


def one():
    return 1


def work():
    global counter
    for _ in range(30000):
        counter += one()


threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"counter: {counter}")
