"""Process: identity, environment, argv, cwd and the machine.

The test sets RETRACE_TEST_VALUE to a random string at record time only.
"""
import os
import socket
import sys

print("pid:", os.getpid())
print("ppid:", os.getppid())
print("environ:", repr(os.environ.get("RETRACE_TEST_VALUE")))
print("getenv:", repr(os.getenv("RETRACE_TEST_VALUE")))
print("environb:", repr(os.environb.get(b"RETRACE_TEST_VALUE")))
print("in environ:", "RETRACE_TEST_VALUE" in os.environ)
os.environ["RETRACE_TEST_DERIVED"] = "derived-" + os.environ.get("RETRACE_TEST_VALUE", "")
os.putenv("RETRACE_TEST_PUT", "put-%d" % os.getpid())
os.environ.pop("RETRACE_TEST_VALUE", None)
print("derived:", repr(os.environ.get("RETRACE_TEST_DERIVED")))
print("derived via getenv:", repr(os.getenv("RETRACE_TEST_DERIVED")))
print("popped:", repr(os.environ.get("RETRACE_TEST_VALUE")))
print("putenv not in environ:", "RETRACE_TEST_PUT" not in os.environ)
print("argv:", sys.argv)
print("cwd:", os.getcwd())
print("cpu_count:", os.cpu_count())
print("uid gid:", os.getuid(), os.getgid(), os.geteuid(), os.getegid())
print("hostname:", socket.gethostname())
print("uname:", os.uname())
