"""Workers racing for items on a queue.SimpleQueue (the queue under
ThreadPoolExecutor), with a tiny switch interval: which worker gets which
item depends on scheduling. Replay must hand every worker the items it got
when recording."""
import queue
import sys
import threading

sys.setswitchinterval(1e-6)
items = queue.SimpleQueue()
lock = threading.Lock()
got = {}


def worker(name):
    mine = []
    while (item := items.get()) is not None:
        mine.append(item)
        if item % 97 == 0:
            try:
                extra = items.get_nowait()
            except queue.Empty:
                continue
            if extra is None:
                break
            mine.append(extra)
    with lock:
        got[name] = mine


threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
for t in threads:
    t.start()
for i in range(1, 1501):
    items.put(i)
    if i % 500 == 0:
        items.put_nowait(-i)
for _ in threads:
    items.put(None)
for t in threads:
    t.join()
for name in sorted(got):
    mine = got[name]
    print(f"{name}: {len(mine)} items, sum {sum(mine)}, first {mine[:3]}")
print(f"total: {sum(len(v) for v in got.values())}")
