"""threading.Timer and daemon threads: timers fire (or are cancelled in time,
or not) depending on scheduling, and daemon threads are still ticking when
the main thread returns."""
import random
import sys
import threading
import time

lock = threading.Lock()


def say(line):
    with lock:
        print(line)


def fired(name):
    say(f"timer {name}: fired")


def ticker(name):
    n = 0
    while True:
        n += 1
        say(f"{name}: tick {n}")
        time.sleep(random.random() / 150)


timers = [threading.Timer(random.random() / 50, fired, args=(f"t{i}",)) for i in range(6)]
for t in timers:
    t.start()
for i in range(3):
    threading.Thread(target=ticker, args=(f"daemon-{i}",), daemon=True).start()
time.sleep(0.01)
for i, t in enumerate(timers):
    if i % 2:
        t.cancel()
        say(f"timer t{i}: cancelled")
for t in timers:
    t.join()
time.sleep(random.random() / 50)
say(f"main: done with {threading.active_count()} threads alive")
sys.stdout.flush()
