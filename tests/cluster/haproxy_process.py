"""The shipped HAProxy config (deploy/haproxy/anyai.cfg) rendered for replicas on ephemeral
ports, and a real `haproxy` process running it, for tests/cluster and bench/cluster_bench.sh.

    with HaproxyProcess([(http_port, grpc_port), ...]) as proxy:
        proxy.http_port, proxy.grpc_port       # the frontends, on 127.0.0.1
        proxy.server_states()                   # {"anyai-0": "UP", ...} of the HTTP backend

render() changes ONLY addresses of the shipped file: each frontend's bind port and each server
line's address; every other line (hashing, ids, weights, health checks, tracking) is the file
as shipped, and each substitution must match exactly once or render() raises. With fewer
replicas than the file lists, the extra server lines are dropped from both backends (bench:
1 replica). The `global` section, which the shipped file leaves to the host (Debian's
/etc/haproxy/haproxy.cfg), is a minimal one here with an admin socket in the temp dir for
`show stat`.

The child gets PR_SET_PDEATHSIG, so it dies with the test. Not thread-safe.
CLI (for shell scripts): haproxy_process.py HTTP_PORT:GRPC_PORT... prints
"haproxy http 127.0.0.1:P grpc 127.0.0.1:Q" and runs until stdin closes or SIGTERM.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(HERE, "..", "..", "deploy", "haproxy", "anyai.cfg")
SHIPPED_HTTP_FRONT = "127.0.0.1:8080"
SHIPPED_GRPC_FRONT = "127.0.0.1:50051"
SHIPPED_HTTP_SERVERS = ("127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083")
SHIPPED_GRPC_SERVERS = ("127.0.0.1:50061", "127.0.0.1:50062", "127.0.0.1:50063")
START_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replace_once(text, pattern, replacement):
    new, n = re.subn(pattern, replacement, text)
    if n != 1:
        raise ValueError(f"deploy/haproxy/anyai.cfg: {pattern!r} matched {n} times, not once")
    return new


def render(replicas, http_front_port, grpc_front_port, path=SHIPPED):
    """The shipped config with the fronts on the given ports and replicas [(http, grpc)]."""
    with open(path) as f:
        text = f.read()
    if not 1 <= len(replicas) <= len(SHIPPED_HTTP_SERVERS):
        raise ValueError(f"1 to {len(SHIPPED_HTTP_SERVERS)} replicas, not {len(replicas)}")
    text = _replace_once(text, r"(?m)^(\s*bind )" + re.escape(SHIPPED_HTTP_FRONT) + r"\b",
                         r"\g<1>127.0.0.1:%d" % http_front_port)
    text = _replace_once(text, r"(?m)^(\s*bind )" + re.escape(SHIPPED_GRPC_FRONT) + r"\b",
                         r"\g<1>127.0.0.1:%d" % grpc_front_port)
    for i, (http_server, grpc_server) in enumerate(zip(SHIPPED_HTTP_SERVERS,
                                                       SHIPPED_GRPC_SERVERS)):
        for shipped, port in ((http_server, replicas[i][0] if i < len(replicas) else None),
                              (grpc_server, replicas[i][1] if i < len(replicas) else None)):
            line = r"(?m)^(\s*server \S+ )" + re.escape(shipped) + r"( .*)\n"
            if port is None:
                text = _replace_once(text, line, "")
            else:
                text = _replace_once(text, line, r"\g<1>127.0.0.1:%d\g<2>\n" % port)
    return text


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class HaproxyProcess:
    def __init__(self, replicas, binary="haproxy"):
        self.replicas = list(replicas)
        self.binary = shutil.which(binary) or "/usr/sbin/haproxy"
        self.dir = None
        self.process = None
        self.http_port = None
        self.grpc_port = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="anyai-haproxy-")
        self.http_port, self.grpc_port = free_port(), free_port()
        self.socket = os.path.join(self.dir, "admin.sock")
        global_cfg = os.path.join(self.dir, "global.cfg")
        with open(global_cfg, "w") as f:
            f.write("global\n  maxconn 4096\n  stats socket %s mode 600 level admin\n"
                    % self.socket)
        cfg = os.path.join(self.dir, "anyai.cfg")
        with open(cfg, "w") as f:
            f.write(render(self.replicas, self.http_port, self.grpc_port))
        self.log = open(os.path.join(self.dir, "haproxy.log"), "wb")
        # -db: foreground, no daemon; the global section comes first, as on Debian.
        self.process = subprocess.Popen([self.binary, "-db", "-f", global_cfg, "-f", cfg],
                                        stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("haproxy exited with status %d:\n%s"
                                   % (self.process.returncode, self.log_text()))
            try:
                for port in (self.http_port, self.grpc_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if os.path.exists(self.socket):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("haproxy did not listen within %.0f s:\n%s"
                                   % (START_TIMEOUT_S, self.log_text()))
            time.sleep(0.05)

    def command(self, line):
        """One command on the admin socket; its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.socket)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode()

    def server_states(self, backend="anyai_http"):
        """{server name: status} ("UP", "DOWN", "UP 1/3", ...) of one backend's servers."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        states = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND",
                                                                          "BACKEND"):
                states[row["svname"]] = row["status"]
        return states

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "haproxy.log"), "rb") as f:
                return f.read()[-20000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            self.process = None
            self.log.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def main(argv):
    replicas = [tuple(int(p) for p in arg.split(":")) for arg in argv]
    with HaproxyProcess(replicas) as proxy:
        print("haproxy http 127.0.0.1:%d grpc 127.0.0.1:%d" % (proxy.http_port, proxy.grpc_port),
              flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            sys.stdin.read()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
