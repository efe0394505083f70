"""A real `anyai-server` process for the Python end-to-end tests.

    with ServerProcess(server_binary, admin_token="t") as server:
        channel = grpc.insecure_channel(server.grpc_address)
        admin = grpc.insecure_channel(server.admin_address)  # the Admin service's own port
        ...
    # stopped: SIGTERM, then SIGKILL after a timeout; its temp data dir removed

The server listens on 127.0.0.1 port 0 (gRPC, HTTP and Admin, so parallel tests never collide)
with a fresh temp data dir; the bound ports are read from its stdout ("grpc listening on
HOST:PORT", then "http listening on ..." and "admin listening on ..."), waiting on the pipe
rather than sleeping. Its stderr goes to a file in the temp
dir and is echoed when something goes wrong. The child gets PR_SET_PDEATHSIG, so it dies with
the test even when the test itself is killed (e.g. by a ctest timeout).

Timeouts are generous because the tests also run against the AddressSanitizer build.
Not thread-safe; one per test class.
"""

import argparse
import ctypes
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

_GRPC_LINE = re.compile(r"^grpc listening on (\S+):(\d+)\s*$")
_HTTP_LINE = re.compile(r"^http listening on (\S+):(\d+)\s*$")
_ADMIN_LINE = re.compile(r"^admin listening on (\S+):(\d+)\s*$")
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: SIGKILL the server when the test process dies. (preexec_fn is unsafe once
    the parent has threads; the tests start their server before opening any gRPC channel.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ServerProcess:
    """One anyai-server child process with its own temp data dir."""

    def __init__(self, binary, admin_token=None, extra_args=()):
        self.binary = binary
        self.admin_token = admin_token
        self.extra_args = list(extra_args)
        self.dir = None
        self.process = None
        self.grpc_address = None
        self.port = None
        self.http_port = None
        self.admin_port = None
        self.admin_address = None
        self.stdout_lines = []
        self._lines = queue.Queue()
        self._reader = None
        self._stderr = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="anyai-e2e-")
        env = dict(os.environ)
        if self.admin_token is not None:
            env["ANYAI_ADMIN_TOKEN"] = self.admin_token
        else:
            env.pop("ANYAI_ADMIN_TOKEN", None)
        args = [self.binary, "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
                "--admin_listen=127.0.0.1:0",
                "--data_dir=" + os.path.join(self.dir, "data")] + self.extra_args
        self._stderr = open(os.path.join(self.dir, "server.stderr"), "wb")
        try:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
                env=env, preexec_fn=_die_with_parent)
        except BaseException:
            self._cleanup_dir()
            raise
        self._reader = threading.Thread(target=self._read_stdout, args=(self.process.stdout,),
                                        daemon=True)
        self._reader.start()
        try:
            self._wait_for_port()
        except BaseException:
            self.stop(check_exit=False)
            raise

    def _read_stdout(self, stdout):
        for raw in stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)  # EOF: the process closed stdout (exited)

    def _wait_for_port(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("anyai-server printed no 'admin listening on' line within "
                                   f"{START_TIMEOUT_S:.0f} s; stderr:\n{self.stderr_text()}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                code = self.process.wait(timeout=STOP_TIMEOUT_S)
                raise RuntimeError(f"anyai-server exited with status {code} before listening; "
                                   f"stderr:\n{self.stderr_text()}")
            self.stdout_lines.append(line)
            match = _GRPC_LINE.match(line)
            if match:
                self.port = int(match.group(2))
                self.grpc_address = f"127.0.0.1:{self.port}"
            match = _HTTP_LINE.match(line)
            if match:
                self.http_port = int(match.group(2))
            match = _ADMIN_LINE.match(line)
            if match:  # printed after the gRPC and HTTP lines: all three are known now
                self.admin_port = int(match.group(2))
                self.admin_address = f"127.0.0.1:{self.admin_port}"
                return

    def stderr_text(self, limit=20000):
        if self.dir is None:
            return ""
        try:
            with open(os.path.join(self.dir, "server.stderr"), "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def stop(self, check_exit=True):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Returns the exit status; with check_exit,
        raises if the server did not stop by itself with status 0 (e.g. a sanitizer report)."""
        if self.process is None:
            self._cleanup_dir()
            return None
        code = None
        killed = False
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    code = self.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    killed = True
                    code = self.process.wait(timeout=STOP_TIMEOUT_S)
            else:
                code = self.process.returncode
            if self._reader is not None:
                self._reader.join(timeout=STOP_TIMEOUT_S)
            self.process.stdout.close()
            stderr = self.stderr_text()
        finally:
            self.process = None
            if self._stderr is not None:
                self._stderr.close()
            self._cleanup_dir()
        if check_exit and (killed or code != 0):
            why = (f"did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM (killed)" if killed
                   else f"exited with status {code} after SIGTERM")
            raise AssertionError(f"anyai-server {why}; stderr:\n{stderr}")
        return code

    def _cleanup_dir(self):
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def parse_args(description, binaries):
    """Parses `--server`, `--admin`, `--pythonpath` (the ones in `binaries`) before unittest
    sees the command line; puts `--pythonpath` on sys.path. Returns (options, argv for
    unittest.main)."""
    parser = argparse.ArgumentParser(description=description, add_help=False)
    for name in binaries:
        parser.add_argument("--" + name, required=True)
    parser.add_argument("--pythonpath", required=True,
                        help="the build's python dir (anyai.v1.*_pb2, google.rpc.*_pb2)")
    options, rest = parser.parse_known_args()
    sys.path.insert(0, options.pythonpath)
    for name in binaries:
        path = getattr(options, name)
        if not os.access(path, os.X_OK):
            parser.error(f"--{name}={path} is not an executable")
    return options, [sys.argv[0]] + rest
