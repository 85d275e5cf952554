"""Condition-based ping-pong. Two threads alternate strictly, then three
players pass a ball to whoever grabs it first (never back to the thrower):
the second phase's order depends on scheduling. Some waits use a timeout."""
import random
import threading
import time

cond = threading.Condition()
turn = "ping"
rounds = 6


def strict(me, other):
    global turn
    for i in range(rounds):
        with cond:
            while turn != me:
                if not cond.wait(timeout=0.002):
                    print(f"{me}: still waiting in round {i}")
            print(f"{me} {i}")
            turn = other
            cond.notify()
        time.sleep(random.random() / 300)


ball = {"holder": None, "last": None, "passes": 0}
ball_cond = threading.Condition(threading.Lock())
PASSES = 15


def player(me):
    while True:
        with ball_cond:
            ball_cond.wait_for(lambda: ball["passes"] >= PASSES
                               or (ball["holder"] is None and ball["last"] != me))
            if ball["passes"] >= PASSES:
                return
            ball["holder"] = me
            ball["passes"] += 1
            print(f"pass {ball['passes']}: {ball['last']} -> {me}")
        time.sleep(random.random() / 200)     # hold the ball a while
        with ball_cond:
            ball["holder"] = None
            ball["last"] = me
            ball_cond.notify_all()
        time.sleep(random.random() / 400)


a = threading.Thread(target=strict, args=("ping", "pong"))
b = threading.Thread(target=strict, args=("pong", "ping"))
a.start()
b.start()
a.join()
b.join()

players = [threading.Thread(target=player, args=(name,)) for name in ("ann", "bob", "cid")]
for t in players:
    t.start()
for t in players:
    t.join()
print(f"passes: {ball['passes']}, last: {ball['last']}")
