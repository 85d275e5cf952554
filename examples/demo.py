"""The quickstart demo (`make demo`): record a worker until it crashes, take
its data away, and replay the crash offline.

1. A "production" directory gets a batch of orders.
2. examples/quickstart/service.py is recorded, run after run, until one run
   dies (it crashes about one time in three, depending on a random draw).
3. The production directory is deleted: the orders file, the ledger, all of it.
4. `retrace inspect` shows what the recording holds; `retrace replay` runs the
   crashed run again, twice, from the recording alone.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICE = os.path.join(HERE, "quickstart", "service.py")
TRACE = os.path.join(os.path.dirname(HERE), "recordings", "quickstart.retrace")


def retrace(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "retrace", *args], capture_output=True,
                          text=True, **kwargs)


def show(title, run):
    print(f"\n$ {title}   (exit status {run.returncode})")
    sys.stdout.write(run.stdout)
    sys.stdout.write(run.stderr)


def main():
    os.makedirs(os.path.dirname(TRACE), exist_ok=True)
    production = tempfile.mkdtemp(prefix="retrace-demo-production-")
    orders = os.path.join(production, "orders.jsonl")
    with open(orders, "w") as f:
        for sku, price, quantity in [("A-100", 19.99, 3), ("B-220", 5.50, 12),
                                     ("C-310", 120.00, 0), ("D-400", 42.00, 1)]:
            f.write(json.dumps({"sku": sku, "price": price, "quantity": quantity}) + "\n")
    ledger = os.path.join(production, "ledger.jsonl")

    for attempt in range(1, 61):
        run = retrace("record", "-o", TRACE, SERVICE, orders, ledger)
        if run.returncode != 0:
            break
    else:
        sys.exit("the worker never crashed in 60 runs")
    show(f"retrace record -o {os.path.relpath(TRACE)} service.py ...   (run {attempt})", run)

    shutil.rmtree(production)
    print(f"\n(deleted {production}: the orders and the ledger are gone)")

    show(f"retrace inspect {os.path.relpath(TRACE)}", retrace("inspect", TRACE))
    for n in (1, 2):
        replay = retrace("replay", TRACE, stdin=subprocess.DEVNULL)
        show(f"retrace replay {os.path.relpath(TRACE)}   (replay {n})", replay)
        same = (replay.stdout, replay.stderr, replay.returncode) == \
            (run.stdout, run.stderr, run.returncode)
        print(f"replay {n} {'matches' if same else 'DOES NOT MATCH'} the recorded run "
              "byte for byte (stdout, stderr, exit status)")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
