"""The boundary table: which C functions are external, module by module.

Each entry names a C module and the functions in it whose results the program
cannot predict.  Every call to them is recorded, and replayed from the trace.
Python modules that re-export these names (os re-exports posix, socket
re-exports _socket, ...) are covered too: patching rewrites every reference
to the original function that any loaded module holds.

To intercept more, add names here.  A name that the running Python does not
have is skipped, so one table serves 3.11 to 3.13.

Calls with effects or values that need more than "record the result" (open(),
scandir(), stdin, random seeding) are handled in _files.py and _patch.py;
socket objects, socketpair(), select/poll/epoll and TLS in _net.py.
"""

FUNCTIONS = {
    "time": [
        # clocks
        "time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
        "process_time", "process_time_ns", "thread_time", "thread_time_ns",
        "clock_gettime", "clock_gettime_ns", "clock_getres", "pthread_getcpuclockid",
        # the current time or the local time zone is read
        "sleep", "localtime", "gmtime", "ctime", "asctime", "strftime", "mktime",
    ],
    "posix": [
        # process identity and environment
        "getpid", "getppid", "getpgrp", "getpgid", "getsid", "getuid", "geteuid", "getgid",
        "getegid", "getgroups", "getresuid", "getresgid", "getlogin", "getpriority",
        "uname", "times", "getloadavg", "cpu_count", "sched_getaffinity", "umask",
        "sysconf", "confstr", "pathconf", "fpathconf", "ctermid", "ttyname", "isatty",
        "get_terminal_size", "device_encoding", "putenv", "unsetenv",
        # randomness
        "urandom", "getrandom",
        # working directory
        "getcwd", "getcwdb", "chdir", "fchdir",
        # paths
        "stat", "lstat", "access", "listdir", "readlink", "statvfs",
        "remove", "unlink", "rename", "replace", "mkdir", "rmdir", "chmod", "lchmod", "chown",
        "lchown", "utime", "link", "symlink", "truncate", "mkfifo", "mknod",
        "getxattr", "setxattr", "listxattr", "removexattr",
        # file descriptors
        "open", "close", "closerange", "read", "readv", "pread", "preadv", "write", "writev",
        "pwrite", "pwritev", "lseek", "fstat", "fstatvfs", "fsync", "fdatasync", "ftruncate",
        "fchmod", "fchown", "dup", "dup2", "pipe", "pipe2", "sendfile", "copy_file_range",
        "get_blocking", "set_blocking", "get_inheritable", "set_inheritable",
        "posix_fallocate", "posix_fadvise", "lockf",
        # child processes are external: their pids, exit statuses and pipes
        # are recorded, and replay starts none (fork: see _fork.py)
        "system", "waitpid", "wait", "wait3", "wait4", "waitid", "posix_spawn", "posix_spawnp",
        # signals reach other processes (or end this one): never sent in replay
        "kill", "killpg", "abort",
    ],
    "signal": ["raise_signal", "pthread_kill"],
    # flags and locks of descriptors that exist only in the recording
    "fcntl": ["fcntl", "ioctl", "flock", "lockf"],
    "_socket": [
        "gethostname", "sethostname",
        # DNS and the system's service, protocol and interface databases
        "getaddrinfo", "getnameinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
        "getservbyname", "getservbyport", "getprotobyname",
        "if_nameindex", "if_nametoindex", "if_indextoname",
        # descriptors (socket.dup(), socket.close(fd))
        "dup", "close",
    ],
    # asyncio passes it a socket's descriptor, which exists only in the recording
    "_signal": ["set_wakeup_fd"],
    "_posixsubprocess": ["fork_exec"],
    "_uuid": ["generate_time_safe"],
    "pwd": ["getpwuid", "getpwnam", "getpwall"],
    "grp": ["getgrgid", "getgrnam", "getgrall"],
    "_locale": ["setlocale", "localeconv", "nl_langinfo", "getencoding"],
}

# Methods of C types that are external: (module, type, method, kind), kind
# being "method" or "classmethod"; "+warns" marks a method that may emit a
# warning (a deprecation), which is recorded and re-emitted in replay.
METHODS = [
    ("datetime", "datetime", "now", "classmethod"),
    ("datetime", "datetime", "utcnow", "classmethod+warns"),
    ("datetime", "datetime", "today", "classmethod"),
    ("datetime", "date", "today", "classmethod"),
    # these read the local time zone when no tzinfo is involved
    ("datetime", "datetime", "fromtimestamp", "classmethod"),
    ("datetime", "date", "fromtimestamp", "classmethod"),
    ("datetime", "datetime", "astimezone", "method"),
    ("datetime", "datetime", "timestamp", "method"),
]

# Module constants computed from the environment when the module was
# imported; recorded at start and restored in replay.
CONSTANTS = {
    "time": ["timezone", "altzone", "daylight", "tzname"],
}

# C database drivers (src/retrace/_drivers.py installs these when the program
# first imports the driver module). Their objects keep their real types.
#
#   support     the module of Retrace that makes stand-ins and keeps a
#               cursor's state for this driver
#   functions   module functions that are events; their results are new
#               external objects (connections)
#   constructors  module functions (events too) that take a class the driver
#               instantiates, a connection factory: {name: (its positions or
#               keyword names)}; the program's class is given to the driver as
#               a callback, so that replay makes its objects with the program's
#               own __init__
#   registries  module functions that take a callable the driver calls back
#               later: {name: (position of the callable, ...)}; not events
#   python_registries  the same in the driver's Python modules
#   own_code    packages whose callables (the driver's own typecasters and
#               adapters, which make plain values) need no replay
#   objects     the driver's types whose instances are external objects:
#     events      methods that are events on the object (the record carries
#                 the object's handle; a call on another object diverges);
#                 __init__ of the C type: whether it succeeded (a factory
#                 subclass's __init__ calls it; replay does not connect)
#     execute     events that run a statement (or make a cursor): replay
#                 checks the statement and its parameters are the recorded
#                 ones (the support module may keep more of the cursor's state)
#     rows        events that return rows the support module builds itself
#                 (psycopg2 fills a row factory's row after it returned)
#     getters     attributes read from the server or the library: events
#     setters     attributes whose assignment reaches the library: events
#     callbacks   methods that take callables the driver calls back:
#                 {name: (positions after self, or keyword names)}; events
#     aggregates  the same for classes whose instances the driver calls back
#                 (step, finalize, value, inverse)
#     files       the same for file objects the driver reads or writes (COPY)
#     constructors  the same for classes the driver instantiates (cursor
#                 factories), as the module's constructors above
#     sequences   the same for iterables of parameter sets (executemany): an
#                 iterator becomes a list, consumed by the program in both runs
#     factories   attributes holding a callable the driver calls back (row
#                 factories): wrapped on assignment, unwrapped on reading
#     constructor_attributes  the same for a class the driver instantiates
DRIVERS = {
    "_sqlite3": {
        "support": "_sqlite",
        "functions": ["connect"],
        "constructors": {"connect": (5, "factory")},
        "registries": {"register_adapter": (1,), "register_converter": (1,)},
        "objects": {
            "Connection": {
                "events": ["__init__", "close", "commit", "rollback", "interrupt", "getlimit",
                           "setlimit", "serialize", "deserialize", "enable_load_extension",
                           "load_extension", "__exit__"],
                "execute": ["cursor", "execute", "executemany", "executescript"],
                "constructors": {"cursor": (0, "factory")},
                "sequences": {"executemany": (1,)},
                "getters": ["in_transaction", "total_changes", "isolation_level", "autocommit"],
                "setters": ["isolation_level", "autocommit"],
                "callbacks": {"create_function": (2, "func"), "create_collation": (1,),
                              "set_authorizer": (0, "authorizer_callback"),
                              "set_progress_handler": (0, "progress_handler"),
                              "set_trace_callback": (0, "trace_callback"),
                              "backup": ("progress",)},
                "aggregates": {"create_aggregate": (2,), "create_window_function": (2,)},
                "factories": ["row_factory", "text_factory"],
            },
            "Cursor": {
                "events": ["fetchone", "fetchmany", "fetchall", "__next__", "close"],
                "execute": ["execute", "executemany", "executescript"],
                "sequences": {"executemany": (1,)},
                "getters": ["rowcount"],
                "factories": ["row_factory"],
            },
        },
    },
}

DRIVERS["psycopg2._psycopg"] = {
    "support": "_psycopg",
    "own_code": ["psycopg2"],
    "functions": ["_connect"],   # a connection factory: see _psycopg.connect
    "registries": {"new_type": (2, "castobj")},
    "python_registries": {"psycopg2.extensions": {"register_adapter": (1,)}},
    "objects": {
        "connection": {
            "events": ["__init__", "close", "commit", "rollback", "cancel", "reset",
                       "set_session", "set_isolation_level", "set_client_encoding",
                       "get_parameter_status", "get_transaction_status", "get_backend_pid",
                       "get_dsn_parameters", "fileno", "poll", "isexecuting", "tpc_begin",
                       "tpc_prepare", "tpc_commit", "tpc_rollback", "tpc_recover", "__enter__",
                       "__exit__"],
            "constructors": {"cursor": (1, "cursor_factory")},
            "getters": ["autocommit", "isolation_level", "readonly", "deferrable", "encoding",
                        "server_version", "protocol_version", "status", "closed", "notices",
                        "dsn", "async", "async_", "info"],
            "setters": ["autocommit", "isolation_level", "readonly", "deferrable"],
            "constructor_attributes": ["cursor_factory"],
        },
        "cursor": {
            "events": ["__init__", "__iter__", "scroll", "close", "nextset", "cast", "__enter__",
                       "__exit__"],
            "rows": ["fetchone", "fetchmany", "fetchall", "__next__"],
            "execute": ["execute", "executemany", "callproc", "mogrify"],
            "sequences": {"executemany": (1, "vars_list")},
            "files": {"copy_expert": (1, "file"), "copy_from": (0, "file"),
                      "copy_to": (0, "file")},
            "getters": ["rowcount", "rownumber", "lastrowid", "statusmessage", "query", "closed",
                        "connection", "name", "scrollable", "withhold", "arraysize", "itersize",
                        "tzinfo_factory"],
            "setters": ["scrollable", "withhold", "arraysize", "itersize", "tzinfo_factory"],
        },
        # conn.info: a new object per read, every attribute read from libpq
        "ConnectionInfo": {
            "events": ["parameter_status", "ssl_attribute"],
            "getters": ["dbname", "user", "password", "host", "port", "options",
                        "dsn_parameters", "status", "transaction_status", "protocol_version",
                        "server_version", "error_message", "socket", "backend_pid",
                        "used_password", "needs_password", "ssl_in_use", "ssl_attribute_names"],
        },
    },
}
