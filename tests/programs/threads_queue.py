"""Producers and consumers over a bounded queue.Queue, with put and get
timeouts: which consumer takes which item, which puts give up on a full
queue and which gets time out on an empty one all depend on scheduling."""
import queue
import random
import threading
import time

say_lock = threading.Lock()
items = queue.Queue(maxsize=2)


def say(line):
    with say_lock:
        print(line)


def jitter(scale=200):
    time.sleep(random.random() / scale)


def producer(name, count):
    for i in range(count):
        jitter(400)
        item = f"{name}-{i}"
        try:
            items.put(item, timeout=random.random() / 300)
        except queue.Full:
            say(f"{name}: full, dropped {item}")
        else:
            say(f"{name}: put {item}")


def consumer(name):
    misses = 0
    while misses < 3:
        try:
            item = items.get(timeout=0.004)
        except queue.Empty:
            misses += 1
            say(f"{name}: empty ({misses})")
            continue
        say(f"{name}: got {item}")
        jitter(150)
        items.task_done()


threads = [threading.Thread(target=producer, args=(f"p{i}", 6), name=f"producer-{i}")
           for i in range(3)]
threads += [threading.Thread(target=consumer, args=(f"c{i}",), name=f"consumer-{i}")
            for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with items.all_tasks_done:
    left = items.unfinished_tasks
print(f"done: {left} unfinished, {items.qsize()} left in the queue")
