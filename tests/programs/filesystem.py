"""Filesystem: reads a data file and a directory tree given in argv, uses
temporary files, and writes into an output directory.

usage: filesystem.py DATA_FILE DATA_DIR OUT_DIR
"""
import os
import pathlib
import sys
import tempfile

data, data_dir, out_dir = sys.argv[1:4]

with open(data) as f:
    print("open.read:", repr(f.read()))
print("Path.read_text:", repr(pathlib.Path(data).read_text()))
print("Path.read_bytes:", pathlib.Path(data).read_bytes()[:24])
with open(data, "rb") as f:
    f.seek(5)
    print("tell after seek:", f.tell())
    print("read(10):", f.read(10))
    f.seek(-8, os.SEEK_END)
    print("tail:", f.tell(), f.read())
with open(data) as f:
    n = 0
    while True:
        line = f.readline()
        if not line:
            break
        n += 1
        print("readline %d:" % n, repr(line))
with open(data) as f:
    print("iterated lines:", [len(line) for line in f])

print("stat:", os.stat(data))
print("lstat:", os.lstat(data))
print("exists:", os.path.exists(data), os.path.exists(data + ".missing"))
print("isfile isdir:", os.path.isfile(data), os.path.isdir(data_dir))
print("getsize:", os.path.getsize(data))
print("listdir:", os.listdir(data_dir))
with os.scandir(data_dir) as it:
    for entry in it:
        print("scandir:", entry.name, entry.is_dir(), entry.is_file(), entry.stat().st_size)
for root, dirs, files in os.walk(data_dir):
    print("walk:", os.path.relpath(root, data_dir), dirs, files)

with tempfile.NamedTemporaryFile("w+", suffix=".txt") as t:
    t.write("named temporary file\n")
    t.flush()
    t.seek(0)
    print("NamedTemporaryFile:", t.name, repr(t.read()))
fd, path = tempfile.mkstemp(prefix="rt-")
os.write(fd, b"written by mkstemp")
os.close(fd)
with open(path, "rb") as f:
    print("mkstemp:", path, f.read())
os.remove(path)
print("removed:", os.path.exists(path))
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "inner.txt")
    with open(p, "w") as f:
        f.write("inside a temporary directory")
    print("TemporaryDirectory:", d, os.listdir(d), pathlib.Path(p).read_text())
print("TemporaryDirectory gone:", os.path.exists(d))

# The output directory: make, rename, remove, then leave one result file.
sub = os.path.join(out_dir, "work")
os.mkdir(sub)
first = os.path.join(sub, "first.txt")
with open(first, "w") as f:
    f.write("scratch")
os.rename(first, os.path.join(sub, "second.txt"))
print("renamed:", sorted(os.listdir(sub)))
os.remove(os.path.join(sub, "second.txt"))
os.rmdir(sub)
result = os.path.join(out_dir, "result.txt")
with open(result, "w") as f:
    f.write("first line of data: " + open(data).readline())
print("result size:", os.path.getsize(result))
print("out_dir:", sorted(os.listdir(out_dir)))
