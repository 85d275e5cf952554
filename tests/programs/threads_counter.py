"""A shared counter under a Lock, with random sleeps inside and outside the
critical section: which thread draws which ticket depends on scheduling."""
import random
import threading
import time

lock = threading.Lock()
counter = 0
tickets = {}


def worker(name):
    global counter
    mine = []
    for _ in range(6):
        time.sleep(random.random() / 200)
        with lock:
            counter += 1
            ticket = counter
            if random.random() < 0.3:
                time.sleep(random.random() / 1000)   # hold the lock a little
            print(f"{name}: ticket {ticket}")
        mine.append(ticket)
    # Try the lock without blocking, and with a short timeout.
    if lock.acquire(blocking=False):
        try:
            print(f"{name}: got the lock at once")
        finally:
            lock.release()
    elif lock.acquire(timeout=0.001):
        try:
            print(f"{name}: got the lock after waiting")
        finally:
            lock.release()
    else:
        with lock:
            print(f"{name}: lock busy")
    with lock:
        tickets[name] = mine


threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(5)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"total: {counter}")
for name in sorted(tickets):
    print(f"{name}: {tickets[name]}")
