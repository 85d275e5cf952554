"""ThreadPoolExecutor + as_completed: results arrive in the order the tasks
finish, which depends on their random sleeps and on scheduling."""
import random
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait, FIRST_COMPLETED


def task(n):
    total = 0
    for step in range(3):
        time.sleep(random.random() / 200)
        total += n * step
    if n % 7 == 6 and n < 100:
        raise ValueError(f"task {n} fails")
    return n, total


with ThreadPoolExecutor(max_workers=4, thread_name_prefix="worker") as pool:
    futures = {pool.submit(task, n): n for n in range(14)}
    for future in as_completed(futures):
        n = futures[future]
        try:
            print(f"completed: task {n} -> {future.result()}")
        except ValueError as exc:
            print(f"failed: task {n}: {exc}")
    # A second round: the first one to finish, then the rest with a timeout.
    round2 = [pool.submit(task, n) for n in range(100, 106)]
    done, pending = wait(round2, return_when=FIRST_COMPLETED)
    print(f"first: {sorted(f.result()[0] for f in done)}")
    for future in as_completed(round2, timeout=30):
        print(f"then: {future.result()[0]}")
print("pool: shut down")
