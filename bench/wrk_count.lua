-- wrk script: a fixed number of requests instead of a fixed duration
-- (bench/web.py). Run with one thread: `WRK_REQUESTS=N wrk -t1 -d600s -s ...`.
--
-- wrk's main thread sleeps for the whole --duration; after the Nth answer
-- this stops the load thread's event loop and wakes the main thread with
-- SIGINT (a signal sent to the process goes to its main thread first), which
-- then reports. Answers read in the same pass of the event loop as the Nth
-- count too (at most connections - 1 more). done() prints the result as one
-- JSON line.

local ffi = require("ffi")
ffi.cdef[[
int getpid(void);
int kill(int pid, int sig);
]]

local limit = tonumber(os.getenv("WRK_REQUESTS"))
local answers = 0

function response(status, headers, body)
    answers = answers + 1
    if answers == limit then
        wrk.thread:stop()
        ffi.C.kill(ffi.C.getpid(), 2)
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
        .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
