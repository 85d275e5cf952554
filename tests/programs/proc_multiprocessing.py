"""multiprocessing with the fork start method: workers send results back."""
import multiprocessing as mp
import os
import random


def work(conn, n):
    conn.send((n, os.getpid(), random.random()))
    conn.close()


if __name__ == "__main__":
    ctx = mp.get_context("fork")
    results = []
    for n in range(3):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=work, args=(child, n))
        p.start()
        results.append(parent.recv())
        p.join()
        print("worker", n, "exit code", p.exitcode)
    print("results:", results)
