"""For the debugger tests: loops, calls, recursion, a generator, exceptions
raised and caught, and values from the outside world (random numbers, the
clock) in the program's state and output.

    python debug_loops.py [ROUNDS]      (main runs ROUNDS times, default 1)
"""
import random
import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def digits(n):
    while n:
        yield n % 10
        n //= 10


def risky(x):
    if x % 5 == 0:
        raise ValueError(f"bad {x}")
    return x * 2


def main():
    items = []
    seed = random.randint(0, 1000)
    started = time.time()
    for i in range(60):
        value = fib(i % 12) + seed
        try:
            value += risky(i)
        except ValueError:
            value = -value
        items.append(value)
        total = sum(digits(abs(value)))
        if i % 10 == 0:
            print(f"{i}: {value} {total} {time.time() - started:.6f}")
    print("items", len(items), sum(items), random.random())
    return items


if __name__ == "__main__":
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        main()
