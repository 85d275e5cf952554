"""subprocess of non-Python programs: output, exit status, pid, errors. The
marker file proves whether the programs really ran."""
import subprocess
import sys

marker = sys.argv[1]
run = subprocess.run(["sh", "-c", 'echo "$$ $(date +%N)"; touch "$1"', "sh", marker],
                     capture_output=True, text=True)
print("run:", run.returncode, run.stdout.split())
print("check_output:", subprocess.check_output(["date", "+%s%N"]).decode().strip())
proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
out, _ = proc.communicate(b"through cat")
print("popen:", proc.pid, out, proc.returncode)
try:
    subprocess.run(["false"], check=True)
except subprocess.CalledProcessError as exc:
    print("check failed:", exc.returncode)
try:
    subprocess.run(["/no/such/program"])
except FileNotFoundError as exc:
    print("missing:", exc.errno, exc.filename)
