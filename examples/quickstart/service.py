"""A small order-pricing worker that crashes in production, now and then.

It reads a batch of orders from a data file, prices each one with a
time-of-day surcharge and a randomly assigned A/B discount, and appends the
results to a ledger.  One order in the batch has a quantity of zero; whether
that crashes depends on which discount the random draw assigned to it.
Run it a few times: sometimes it finishes, sometimes it dies with
ZeroDivisionError.  `retrace record` the run that died and replay it, offline,
as often as you need.
"""
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime

DISCOUNTS = {"control": 0.0, "loyal": 0.1, "per-unit": None}


def unit_price(order, scheme):
    if DISCOUNTS[scheme] is None:
        # per-unit schemes spread a fixed rebate over the quantity
        return order["price"] - 5.0 / order["quantity"]
    return order["price"] * (1 - DISCOUNTS[scheme])


def price(order):
    scheme = random.choice(sorted(DISCOUNTS))
    surcharge = 1.2 if datetime.now().hour >= 18 else 1.0
    total = unit_price(order, scheme) * order["quantity"] * surcharge
    return {"id": str(uuid.uuid4()), "order": order["sku"], "scheme": scheme,
            "total": round(total, 2)}


def main(orders_path, ledger_path):
    print(f"worker {os.getpid()} starting at {time.strftime('%H:%M:%S')}")
    with open(orders_path) as f:
        orders = [json.loads(line) for line in f]
    with open(ledger_path, "a") as ledger:
        for order in orders:
            line = price(order)
            ledger.write(json.dumps(line) + "\n")
            print(f"priced {line['order']:>8} with {line['scheme']:<8} -> {line['total']:8.2f}")
    print("batch done")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
