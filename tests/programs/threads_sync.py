"""Event, Semaphore, BoundedSemaphore and Barrier: the order of entries, the
barrier's indices and timed-out waits depend on scheduling."""
import random
import threading
import time

say_lock = threading.Lock()
start = threading.Event()
never = threading.Event()
slots = threading.BoundedSemaphore(2)
barrier = threading.Barrier(4, action=lambda: say("barrier: all arrived"))
inside = 0


def say(line):
    with say_lock:
        print(line)


def worker(name):
    global inside
    start.wait()
    for round_ in range(2):
        with slots:
            with say_lock:
                inside += 1
                print(f"{name}: enters (round {round_}, {inside} inside)")
            time.sleep(random.random() / 200)
            with say_lock:
                inside -= 1
                print(f"{name}: leaves (round {round_})")
        index = barrier.wait()
        say(f"{name}: barrier index {index} (round {round_})")
    if not never.wait(timeout=random.random() / 500):
        say(f"{name}: event wait timed out")
    sem = threading.Semaphore(0)
    if not sem.acquire(timeout=0.001):
        say(f"{name}: semaphore timed out")


threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
for t in threads:
    t.start()
time.sleep(random.random() / 200)
say("main: go")
start.set()
for t in threads:
    t.join()
print(f"inside: {inside}, barrier broken: {barrier.broken}")
