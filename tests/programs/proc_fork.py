"""fork: parent and child both print nondeterministic values; the child
reports back through a pipe and exits with a status the parent checks."""
import os
import random
import time

print("parent before fork:", random.random(), flush=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    message = f"child {os.getpid()} drew {random.random()} at {time.time()}"
    os.write(w, message.encode())
    print("child:", message, flush=True)
    os._exit(3)
os.close(w)
received = os.read(r, 1000).decode()
_, status = os.waitpid(pid, 0)
print("parent received:", received)
print("child exit status:", os.waitstatus_to_exitcode(status), "then", random.random())
