"""The HTTP front's connection bounds end to end (issue 12): a real anyai-server started with a
lowered open-file limit (256, soft and hard, set in the child before exec) and small caps from a
config file, flooded over loopback from addresses of 127/8 (Linux routes all of it to lo).

  - A flood of idle connections from one address: only max_connections_per_address are held
    (the rest closed at accept), another address is served meanwhile, and the held ones are
    closed at first_byte_timeout.
  - A flood from many addresses, more than the descriptor limit allows: the server lowers its
    total cap to fit the limit (and says so on stderr), turns the rest away instead of running
    out of descriptors, serves again once the flood is gone, and stops cleanly on SIGTERM.
  - The same flood on the gRPC port (its own listener has the same caps).
  - Request smuggling: `Transfer-Encoding: gzip` with a second request behind it is refused
    with 400 and the connection closed; the smuggled request is never answered.

  /usr/bin/python3 tests/e2e/http_hardening_test.py --server build/bin/anyai-server \\
      --admin build/bin/anyai-admin \\
      --pythonpath build/python
"""

import os
import resource
import socket
import tempfile
import time
import unittest

import anyai_server_process

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

FD_LIMIT = 256
PER_ADDRESS = 8
FIRST_BYTE_TIMEOUT_S = 5
IO_TIMEOUT_S = 10.0

_die_with_parent = anyai_server_process._die_with_parent


def _limited_child():
    """preexec_fn: the usual PR_SET_PDEATHSIG, and the lowered descriptor limit."""
    _die_with_parent()
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def connect(port, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(IO_TIMEOUT_S)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_server(s, timeout_s):
    """True when the server closes `s` (EOF or reset) within timeout_s; what it sends first
    (e.g. an over-capacity 503) is read and dropped."""
    s.settimeout(timeout_s)
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def closed_already(s):
    """True when the server has already closed `s` (what it sent first is read and dropped);
    does not wait."""
    s.setblocking(False)
    try:
        while True:
            if not s.recv(4096):
                return True
    except (BlockingIOError, InterruptedError):
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.settimeout(IO_TIMEOUT_S)


def request(port, source, raw):
    """Sends raw bytes, returns everything the server answers until it closes."""
    s = connect(port, source)
    try:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def healthz_status(port, source):
    try:
        data = request(port, source,
                       b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    except OSError:
        return 0
    if not data.startswith(b"HTTP/1.1 "):
        return 0
    return int(data[9:12])


class HttpHardeningTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        # This process holds a few hundred client sockets at once.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < 4096:
            target = hard if hard == resource.RLIM_INFINITY else min(hard, 4096)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))

    def start_server(self, max_connections):
        config_dir = tempfile.mkdtemp(prefix="anyai-e2e-http-hardening-")
        path = os.path.join(config_dir, "server.textproto")
        with open(path, "w") as f:
            f.write(f"max_connections: {max_connections}\n"
                    f"max_connections_per_address: {PER_ADDRESS}\n"
                    f"first_byte_timeout {{ seconds: {FIRST_BYTE_TIMEOUT_S} }}\n"
                    f"header_timeout {{ seconds: 2 }}\n"
                    f"shutdown_grace {{ seconds: 2 }}\n")
        server = anyai_server_process.ServerProcess(OPTIONS.server,
                                                    extra_args=["--config=" + path])
        anyai_server_process._die_with_parent = _limited_child
        try:
            server.start()
        finally:
            anyai_server_process._die_with_parent = _die_with_parent
        self.addCleanup(lambda: (os.unlink(path), os.rmdir(config_dir)))
        self.addCleanup(server.stop, check_exit=False)
        return server

    def flood(self, port, sources, per_source):
        """Opens per_source idle connections from each source; returns them all."""
        held = []
        self.addCleanup(lambda: [s.close() for s in held])
        for source in sources:
            for _ in range(per_source):
                held.append(connect(port, source))
        return held

    def turned_away(self, flood):
        """The indices of the flood's connections the server closed within 3 s (at accept: well
        before the first-byte or handshake timeout), once all but PER_ADDRESS are."""
        turned_away = set()
        deadline = time.monotonic() + 3
        while len(turned_away) < len(flood) - PER_ADDRESS and time.monotonic() < deadline:
            turned_away |= {i for i, s in enumerate(flood)
                            if i not in turned_away and closed_already(s)}
            time.sleep(0.05)
        return turned_away

    def test_a_flood_from_one_address_leaves_room_for_others(self):
        server = self.start_server(max_connections=100)
        flood = self.flood(server.http_port, ["127.0.0.2"], 60)
        # Another address is served while the flood is held.
        self.assertEqual(healthz_status(server.http_port, "127.0.0.3"), 200)
        # All but PER_ADDRESS of the flood were turned away at accept (well before the
        # first-byte timeout closes the rest).
        turned_away = self.turned_away(flood)
        self.assertGreaterEqual(len(turned_away), len(flood) - PER_ADDRESS)
        self.assertLess(len(turned_away), len(flood))
        # The held ones, which never sent a byte, go at first_byte_timeout.
        held = [s for i, s in enumerate(flood) if i not in turned_away]
        for s in held:
            self.assertTrue(closed_by_server(s, FIRST_BYTE_TIMEOUT_S + IO_TIMEOUT_S))
        self.assertEqual(healthz_status(server.http_port, "127.0.0.2"), 200)
        self.assertEqual(server.stop(), 0)

    def test_a_flood_past_the_descriptor_limit_is_survived(self):
        server = self.start_server(max_connections=4096)  # more than 256 descriptors allow
        sources = [f"127.0.0.{i}" for i in range(10, 10 + 40)]  # 40 x 8 = 320 > 256
        flood = self.flood(server.http_port, sources, PER_ADDRESS)
        self.assertEqual(len(flood), 320)
        deadline = time.monotonic() + 30
        while "lowered to" not in server.stderr_text():
            self.assertLess(time.monotonic(), deadline, server.stderr_text())
            time.sleep(0.05)
        self.assertIn("max_connections 4096 lowered to", server.stderr_text())
        # Let it go; the server is serving again, and still alive.
        for s in flood:
            s.close()
        status = 0
        deadline = time.monotonic() + 30
        while status != 200 and time.monotonic() < deadline:
            status = healthz_status(server.http_port, "127.0.0.200")
            if status != 200:
                time.sleep(0.1)
        self.assertEqual(status, 200)
        self.assertIsNone(server.process.poll())
        self.assertEqual(server.stop(), 0)

    def test_a_grpc_flood_from_one_address_leaves_room_for_others(self):
        """The gRPC port has the same caps (server/grpc/grpc_acceptor.h); gRPC 1.51 has none."""
        import grpc  # noqa: E402  (python3-grpcio, only for this test)
        from anyai.v1 import anyai_pb2  # noqa: E402
        server = self.start_server(max_connections=100)
        port = int(server.grpc_address.rsplit(":", 1)[1])
        flood = self.flood(port, ["127.0.0.2"], 60)
        turned_away = self.turned_away(flood)
        self.assertGreaterEqual(len(turned_away), len(flood) - PER_ADDRESS)
        self.assertLess(len(turned_away), len(flood))
        # Another address (grpcio's, 127.0.0.1) is served while the flood is held.
        with grpc.insecure_channel(server.grpc_address) as channel:
            list_models = channel.unary_unary(
                "/anyai.v1.AnyAI/ListModels",
                request_serializer=anyai_pb2.ListModelsRequest.SerializeToString,
                response_deserializer=anyai_pb2.ListModelsResponse.FromString)
            models = list_models(anyai_pb2.ListModelsRequest(), timeout=IO_TIMEOUT_S)
            self.assertGreater(len(models.data), 0)
        # The held ones, which never sent a byte, go at the handshake timeout (header_timeout).
        held = [s for i, s in enumerate(flood) if i not in turned_away]
        for s in held:
            self.assertTrue(closed_by_server(s, 2 + IO_TIMEOUT_S))
        # Their places are given back: the address is admitted again.
        again = connect(port, "127.0.0.2")
        self.addCleanup(again.close)
        time.sleep(0.3)
        self.assertFalse(closed_already(again))
        self.assertEqual(server.stop(), 0)

    def test_a_smuggled_request_is_never_served(self):
        server = self.start_server(max_connections=100)
        data = request(server.http_port, "127.0.0.1",
                       b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                       b"Transfer-Encoding: gzip\r\n\r\n"
                       b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertIn(b'"code":"invalid_http_request"', data)
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, data)  # one answer: the refusal
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
