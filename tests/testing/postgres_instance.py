"""A throwaway PostgreSQL server for tests (Debian's `postgresql` package).

    with PostgresInstance() as pg:
        pg.dsn        # "host=127.0.0.1 port=N dbname=anyai user=anyai": a fresh database
                      # owned by the role `anyai` (trust auth on loopback: a test only)
        pg.stop()     # simulate an outage: the server stops, its data dir stays
        pg.start()    # the same data, on the same port (so pg.dsn stays valid)
        pg.psql("SELECT 1")   # runs SQL as the superuser, returns psql's unaligned output
    # stopped and its temp dir removed, also when the test failed

It runs `initdb` in a fresh temp dir, then the `postgres` binary itself as a child process
listening on 127.0.0.1:<a free port> with its unix socket in the temp dir (nothing under
/var/run, nothing shared with a system PostgreSQL). initdb and postgres refuse to run as root:
as root both run as the `postgres` system user (the temp dir is chowned to it); as any other
user they run as that user. The child gets PR_SET_PDEATHSIG, so it dies with the test even when
the test is killed (e.g. by a ctest timeout); otherwise stop() and the context manager, plus an
atexit hook, stop it. Every wait is bounded (START_TIMEOUT_S, STOP_TIMEOUT_S).

For speed the server runs with fsync=off (a test never loses power); synchronous_commit keeps
its default (on), so a COMMIT returns once the WAL is written, as in production.

The binaries are found in $ANYAI_PG_BINDIR, else the newest /usr/lib/postgresql/*/bin, else
PATH. Also usable from a shell: `python3 postgres_instance.py -- CMD ARGS...` runs CMD with
$ANYAI_TEST_POSTGRES_DSN set (and $ANYAI_TEST_POSTGRES_CONTROL, see control_main) and then
stops the server.

Not thread-safe: one instance per test, driven from one thread.
"""

import atexit
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1
_live = set()


def _bindir():
    env = os.environ.get("ANYAI_PG_BINDIR")
    if env:
        return env
    found = glob.glob("/usr/lib/postgresql/*/bin/postgres")

    def version(path):
        match = re.search(r"/postgresql/(\d+)", path)
        return int(match.group(1)) if match else 0

    if found:
        return os.path.dirname(max(found, key=version))
    which = shutil.which("postgres") or shutil.which("initdb")
    if which:
        return os.path.dirname(which)
    raise RuntimeError("PostgreSQL server binaries not found (Debian: apt-get install "
                       "postgresql; or run scripts/install-deps.sh --tests)")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresInstance:
    """One throwaway PostgreSQL server with a database and role `anyai`."""

    def __init__(self, database="anyai", user="anyai"):
        self.database = database
        self.user = user
        self.bindir = _bindir()
        self.dir = None
        self.data_dir = None
        self.socket_dir = None
        self.port = None
        self.process = None
        self._log = None
        self._run_as = None  # (uid, gid) when running as root

    # -- the API ----------------------------------------------------------------------------

    @property
    def dsn(self):
        return f"host=127.0.0.1 port={self.port} dbname={self.database} user={self.user}"

    def __enter__(self):
        try:
            self._init()
            self.start()
            self._create_role_and_db()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self):
        """Starts the server on self.port (a free port chosen at the first start) and waits
        until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        if self.port is None:
            self.port = _free_port()
        args = [os.path.join(self.bindir, "postgres"), "-D", self.data_dir,
                "-p", str(self.port), "-k", self.socket_dir,
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                "-c", "full_page_writes=off", "-c", "max_connections=100",
                "-c", "logging_collector=off"]
        log = open(os.path.join(self.dir, "postgres.log"), "ab")
        try:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=log, preexec_fn=self._child_setup,
                                            cwd=self.dir)
        finally:
            log.close()
        _live.add(self)
        self._wait_ready()

    def stop(self):
        """Fast shutdown (SIGINT: open sessions are cut), SIGKILL after STOP_TIMEOUT_S. The
        data dir stays for start()."""
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self.process = None
            _live.discard(self)

    def close(self):
        """Stops the server and removes the temp dir."""
        try:
            self.stop()
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def psql(self, sql, database=None):
        """Runs `sql` as the superuser; returns stdout (unaligned, tuples only)."""
        out = subprocess.run(
            [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database or self.database, "-c", sql],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=START_TIMEOUT_S)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed ({out.returncode}): "
                               f"{out.stderr.decode('utf-8', 'replace')}")
        return out.stdout.decode("utf-8", "replace")

    def log_text(self, limit=20000):
        if self.dir is None:
            return ""
        try:
            with open(os.path.join(self.dir, "postgres.log"), "rb") as f:
                return f.read()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    # -- internals --------------------------------------------------------------------------

    def _child_setup(self):
        # Drop privileges first: changing the uid clears the parent-death signal.
        if self._run_as is not None:
            uid, gid = self._run_as
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def _init(self):
        self.dir = tempfile.mkdtemp(prefix="anyai-pg-")
        self.data_dir = os.path.join(self.dir, "data")
        self.socket_dir = os.path.join(self.dir, "socket")
        os.mkdir(self.socket_dir, 0o700)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            self._run_as = (entry.pw_uid, entry.pw_gid)
            for path in (self.dir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        out = subprocess.run(
            [os.path.join(self.bindir, "initdb"), "-D", self.data_dir, "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            stdin=subprocess.DEVNULL, capture_output=True, preexec_fn=self._child_setup,
            cwd=self.dir, timeout=START_TIMEOUT_S)
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed ({out.returncode}): "
                               f"{out.stderr.decode('utf-8', 'replace')}")

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        isready = os.path.join(self.bindir, "pg_isready")
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                _live.discard(self)
                raise RuntimeError(f"postgres exited with status {code} at start; "
                                   f"log:\n{self.log_text()}")
            out = subprocess.run([isready, "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                  "-d", "postgres", "-U", "postgres", "-t", "2"],
                                 stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
            if out.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready within {START_TIMEOUT_S:.0f} s; "
                                   f"log:\n{self.log_text()}")
            time.sleep(0.05)

    def _create_role_and_db(self):
        self.psql(f'CREATE ROLE "{self.user}" LOGIN', database="postgres")
        self.psql(f'CREATE DATABASE "{self.database}" OWNER "{self.user}"', database="postgres")


@atexit.register
def _stop_all():
    for instance in list(_live):
        try:
            instance.close()
        except Exception:  # best effort at exit
            pass


def control_main(argv):
    """`python3 postgres_instance.py -- CMD ARGS...`: runs CMD with ANYAI_TEST_POSTGRES_DSN
    set, and ANYAI_TEST_POSTGRES_CONTROL set to a fifo path: CMD may write "stop\\n" or
    "start\\n" to it and then read one line ("ok" or "error ...") from the path + ".reply"
    fifo, to simulate an outage. Returns CMD's exit status."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: postgres_instance.py -- CMD ARGS...", file=sys.stderr)
        return 2
    import threading
    with PostgresInstance() as pg:
        control = os.path.join(pg.dir, "control")
        reply = control + ".reply"
        os.mkfifo(control, 0o600)
        os.mkfifo(reply, 0o600)
        env = dict(os.environ, ANYAI_TEST_POSTGRES_DSN=pg.dsn,
                   ANYAI_TEST_POSTGRES_CONTROL=control)
        child = subprocess.Popen(argv, env=env)

        def serve():
            while True:
                try:
                    with open(control, "r") as f:
                        lines = f.read().split()
                except OSError:
                    return
                for command in lines:
                    try:
                        if command == "stop":
                            pg.stop()
                        elif command == "start":
                            pg.start()
                        elif command == "quit":
                            return
                        answer = "ok"
                    except Exception as e:  # reported to the child
                        answer = "error " + str(e).replace("\n", " ")[:500]
                    with open(reply, "w") as r:
                        r.write(answer + "\n")

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        code = child.wait()
        try:  # unblock the control thread
            fd = os.open(control, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"quit\n")
            os.close(fd)
        except OSError:
            pass
        server.join(timeout=5)
        return code


if __name__ == "__main__":
    sys.exit(control_main(sys.argv[1:]))
