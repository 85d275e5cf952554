"""Clock: every common way a program reads the time.

Each line is "label: value" so a test can compare the shape of two runs.
"""
import datetime
import time

print("time.time:", repr(time.time()))
print("time.time_ns:", time.time_ns())
print("time.monotonic:", repr(time.monotonic()))
print("time.monotonic_ns:", time.monotonic_ns())
print("time.perf_counter:", repr(time.perf_counter()))
print("time.perf_counter_ns:", time.perf_counter_ns())
print("time.process_time:", repr(time.process_time()))
print("time.process_time_ns:", time.process_time_ns())
print("time.thread_time:", repr(time.thread_time()))
t0 = time.perf_counter()
time.sleep(0.01)
print("slept:", repr(time.perf_counter() - t0))
print("datetime.now:", repr(datetime.datetime.now()))
print("datetime.now(utc):", repr(datetime.datetime.now(datetime.timezone.utc)))
print("datetime.utcnow:", repr(datetime.datetime.utcnow()))
print("datetime.today:", repr(datetime.datetime.today()))
print("date.today:", repr(datetime.date.today()))
print("localtime:", time.localtime())
print("gmtime:", time.gmtime())
print("strftime:", time.strftime("%c %Z"))
print("ctime:", time.ctime())
print("asctime:", time.asctime())
