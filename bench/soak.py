#!/usr/bin/python3
"""Soak test of anyai-server (issue 12; not run by CI): memory and latency over a long run with a
flood of distinct tenants.

It starts a Release anyai-server on loopback (ports picked by the kernel, a fresh temp data
dir, removed at the end) with a config that raises every rate limit out of reach and trusts
127.0.0.1 as a proxy, creates API keys through the Admin service (on its own listener when the
server prints an `admin listening on` line, else on the gRPC port), then for --duration drives
the HTTP front over keep-alive HTTP/1.1 connections with a mix of endpoints (chat completions,
image generations, imagine, models, /check) from:
  - anonymous tenants: each request's client address is set through X-Forwarded-For (10.x.y.z),
    walking --anonymous-tenants distinct addresses (1M by default) in order, with a share of
    requests (--revisit) going back to an address already used (a tenant evicted meanwhile is
    loaded back from storage);
  - keyed tenants: --keys keys on the premium plan, picked at random.
Every --interval seconds (10) it prints one line: elapsed time, the server's RSS (VmRSS from
/proc), requests per second, p50 and p99 latency, the resident tenants as /metrics exports them
(anyai_tenants_resident), distinct anonymous tenants so far, and the answers by status. At the
end, a summary; with --csv, the same rows as CSV.

    bench/soak.py                                  # build/bin/anyai-server, 10 minutes
    bench/soak.py --duration 3m --max-resident-tenants 100000 --server build-h6/bin/anyai-server
    bench/soak.py --duration 30s --workers 1 --connections 16   # a quick look

Options: --server PATH (default: build/bin/anyai-server of this checkout), --duration (seconds,
or with s/m/h), --max-resident-tenants N (the server's cap; default: the server's own,
1,000,000), --anonymous-tenants N, --keys N, --workers N (load processes, default 2),
--connections N (per worker, default 32), --revisit FRACTION (default 0.1),
--image-store-bytes N (the server's image store bound, default 32 MiB), --interval S,
--csv PATH, --keep-server-log PATH (copy the server's stderr there). Exit status 0 when the
run completed and the server stopped cleanly on SIGTERM.

What to expect of RSS: besides the resident tenants (a few hundred bytes each, ~1.3 KB once a
tenant's history slots exist), it holds RocksDB's memtables (up to 2 x 64 MiB of usage
records before a flush) and the image store; all three are bounded, so with the cap below
the number of distinct tenants the curve levels off, and without it (or with a cap above
them) it keeps climbing with every new tenant until idle_tenant_timeout (10 min) lets
EvictIdle drop them.

Only the Python standard library and Debian's python3-grpcio are used (the Admin calls are
encoded by hand, so no generated stubs are needed). Load generator and server share the
machine: on 2 cores the figures are the pair's, not the server's alone.
"""

import argparse
import asyncio
import collections
import csv
import multiprocessing
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["llm", "closed_llm", "image_generation", "globalask", "imagine", "vision", "meta"]
# (weight, endpoint) of the mix; /check goes to keyed tenants (an anonymous one has no key).
MIX = [(40, "chat"), (15, "models"), (10, "check"), (20, "imagine"), (15, "images")]
KEYED_SHARE = 0.2
LINE = re.compile(r"^(grpc|http|admin) listening on (\S+):(\d+)\s*$")


def parse_duration(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration is a number of seconds, or 90s, "
                                         "10m, 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def server_config(data_dir, max_resident, image_store_bytes):
    """A textproto config: limits no soak reaches, on both plans and every class; every
    connection from loopback (the proxy) allowed; the image store (generated images kept for
    their URLs) bounded at `image_store_bytes`, so that its fill does not hide the tenants'."""
    lines = ['grpc_listen: "127.0.0.1:0"', 'http_listen: "127.0.0.1:0"',
             'admin_listen: "127.0.0.1:0"', f'data_dir: "{data_dir}"',
             'trusted_proxies: "127.0.0.1/32"', 'trusted_proxies: "::1/128"',
             "max_connections: 20000", "max_connections_per_address: 20000",
             f"image_store_max_bytes: {image_store_bytes}",
             'idle_tenant_timeout { seconds: 600 }']
    if max_resident is not None:
        lines.append(f"max_resident_tenants: {max_resident}")
    for plan in ("free", "premium"):
        lines.append(f'plans {{ name: "{plan}" max_message_chars: 5000')
        for c in CLASSES:
            lines.append(f'  classes {{ feature_class: "{c}" '
                         "windows { length { seconds: 86400 } max_requests: 8000000 } }")
        lines.append("}")
    return "\n".join(lines) + "\n"


class Server:
    """The anyai-server child: started with its own temp dir, its stdout read for addresses."""

    def __init__(self, binary, max_resident, image_store_bytes, admin_token):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="anyai-soak-")
        self.config = os.path.join(self.dir, "config.textproto")
        with open(self.config, "w") as f:
            f.write(server_config(os.path.join(self.dir, "data"), max_resident, image_store_bytes))
        self.stderr_path = os.path.join(self.dir, "server.stderr")
        self.addresses = {}
        self.lines = queue.Queue()
        env = dict(os.environ, ANYAI_ADMIN_TOKEN=admin_token)
        self.stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(
            [binary, "--config=" + self.config, "--admin_listen=127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.process.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def wait_listening(self, timeout=60.0):
        """Waits for the http line (and the admin line, if this build prints one soon after)."""
        deadline = time.monotonic() + timeout
        settle = None  # once http is known: a moment more for an admin line printed after it
        while True:
            now = time.monotonic()
            if "http" in self.addresses and ("admin" in self.addresses or now >= settle):
                return
            limit = (settle if "http" in self.addresses else deadline) - now
            if now >= deadline:
                raise RuntimeError("anyai-server did not print 'http listening on' in time:\n"
                                   + self.stderr_text())
            try:
                line = self.lines.get(timeout=max(0.01, limit))
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"anyai-server exited ({self.process.wait()}) before "
                                   f"listening:\n{self.stderr_text()}")
            m = LINE.match(line)
            if m:
                self.addresses[m.group(1)] = (m.group(2), int(m.group(3)))
                if m.group(1) == "http":
                    settle = time.monotonic() + 2.0

    @property
    def admin_target(self):
        host, port = self.addresses.get("admin") or self.addresses["grpc"]
        return f"{host}:{port}"

    def rss_bytes(self):
        try:
            with open(f"/proc/{self.process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def stderr_text(self, limit=4000):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, keep_log=None):
        code = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                code = "killed"
        else:
            code = self.process.returncode
        self.stderr.close()
        if keep_log:
            shutil.copyfile(self.stderr_path, keep_log)
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


# --- Admin.CreateKey, encoded by hand (proto/anyai/v1/admin.proto) ---------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _string_field(number, text):
    data = text.encode()
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _fields(buf):
    """(number, wire type, value) of a message's top-level fields (varint and length-delimited)."""
    i = 0
    while i < len(buf):
        key, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        number, wire = key >> 3, key & 7
        if wire == 0:
            while buf[i] & 0x80:
                i += 1
            i += 1
            yield number, wire, None
        elif wire == 2:
            length, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            yield number, wire, buf[i:i + length]
            i += length
        else:
            raise ValueError(f"unexpected wire type {wire}")


def create_keys(target, admin_token, count, plan="premium"):
    import grpc  # Debian's python3-grpcio
    keys = []
    with grpc.insecure_channel(target) as channel:
        create = channel.unary_unary("/anyai.v1.Admin/CreateKey")
        for i in range(count):
            request = _string_field(1, plan) + _string_field(2, f"soak {i}")
            response = create(request, metadata=[("authorization", "Bearer " + admin_token)],
                              timeout=30)
            key = next((v.decode() for n, w, v in _fields(response) if n == 2 and w == 2), None)
            if not key:
                raise RuntimeError("CreateKey answered without a key")
            keys.append(key)
    return keys


# --- The load: one asyncio loop per worker process --------------------------------------------

def _request(endpoint, host, key, address, rng):
    if endpoint == "chat":
        body = ('{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":'
                f'"soak {rng.randrange(1 << 30)}"}}]}}').encode()
        head = f"POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
    elif endpoint == "images":
        body = (b'{"model":"dall-e-2","prompt":"a soak test","n":1,"size":"256x256",'
                b'"response_format":"url"}')
        head = f"POST /v1/images/generations HTTP/1.1\r\nContent-Type: application/json\r\n"
    elif endpoint == "imagine":
        body = b""
        head = (f"GET /v1/imagine?prompt=soak&width=64&height=64&steps=1&seed="
                f"{rng.randrange(1000)} HTTP/1.1\r\n")
    elif endpoint == "check":
        body = b""
        head = f"GET /check?key={key} HTTP/1.1\r\n"
    else:
        body = b""
        head = "GET /v1/models HTTP/1.1\r\n"
    head += f"Host: {host}\r\n"
    if key is not None:
        head += f"Authorization: Bearer {key}\r\n"
    else:
        head += f"X-Forwarded-For: {address}\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _read_response(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, chunked, close = 0, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and "close" in value:
            close = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


def worker_main(index, workers, options, http, keys, results, stop_at):
    rng = random.Random(0x50A4 + index)
    host = f"{http[0]}:{http[1]}"
    weights = [w for w, _ in MIX]
    endpoints = [e for _, e in MIX]
    state = {"next": index, "seen": 0, "count": 0, "statuses": collections.Counter(),
             "latencies": [], "errors": 0}

    def pick():
        endpoint = rng.choices(endpoints, weights)[0]
        if endpoint == "check" or rng.random() < KEYED_SHARE:
            return endpoint, rng.choice(keys), None
        if state["seen"] > 0 and rng.random() < options.revisit:
            n = rng.randrange(state["seen"]) * workers + index
        else:
            n = state["next"]
            state["next"] += workers
            state["seen"] += 1
        n %= options.anonymous_tenants
        return endpoint, None, f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    async def connection():
        reader = writer = None
        while time.time() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(http[0], http[1])
                endpoint, key, address = pick()
                start = time.perf_counter()
                writer.write(_request(endpoint, host, key, address, rng))
                await writer.drain()
                status, close = await _read_response(reader)
                state["latencies"].append(time.perf_counter() - start)
                state["count"] += 1
                state["statuses"][status] += 1
                if close:
                    writer.close()
                    writer = None
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError,
                    IndexError):
                state["errors"] += 1
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.05)
        if writer is not None:
            writer.close()

    async def report():
        while time.time() < stop_at + 0.5:
            await asyncio.sleep(1.0)
            results.put((index, state["count"], dict(state["statuses"]), state["latencies"],
                         state["errors"], state["seen"]))
            state["count"], state["statuses"], state["latencies"], state["errors"] = (
                0, collections.Counter(), [], 0)

    async def main():
        tasks = [asyncio.create_task(connection()) for _ in range(options.connections)]
        reporter = asyncio.create_task(report())
        await asyncio.gather(*tasks)
        await reporter

    asyncio.run(main())


def resident_tenants(http):
    try:
        with urllib.request.urlopen(f"http://{http[0]}:{http[1]}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("anyai_tenants_resident"):
                    return int(float(line.split()[-1]))
    except OSError:
        pass
    return None


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.path.join(REPO, "build", "bin", "anyai-server"))
    parser.add_argument("--duration", type=parse_duration, default=600.0)
    parser.add_argument("--max-resident-tenants", type=int, default=None)
    parser.add_argument("--anonymous-tenants", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--revisit", type=float, default=0.1)
    parser.add_argument("--image-store-bytes", type=int, default=32 << 20)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--csv")
    parser.add_argument("--keep-server-log")
    options = parser.parse_args()
    if not os.access(options.server, os.X_OK):
        parser.error(f"--server={options.server} is not an executable (build it: cmake --build "
                     "<dir> --target anyai-server)")

    admin_token = "soak-" + os.urandom(8).hex()
    server = Server(options.server, options.max_resident_tenants, options.image_store_bytes,
                    admin_token)
    rows = []
    try:
        server.wait_listening()
        http = server.addresses["http"]
        keys = create_keys(server.admin_target, admin_token, options.keys)
        print(f"anyai-server pid {server.process.pid}: http {http[0]}:{http[1]}, admin "
              f"{server.admin_target}; {len(keys)} keys; cap "
              f"{options.max_resident_tenants or 'server default'}; {options.workers} workers x "
              f"{options.connections} connections; {options.duration:.0f} s", flush=True)
        start = time.time()
        stop_at = start + options.duration
        ctx = multiprocessing.get_context("spawn")  # no fork after gRPC was initialised
        results = ctx.Queue()
        workers = [ctx.Process(target=worker_main,
                               args=(i, options.workers, options, http, keys, results, stop_at),
                               daemon=True) for i in range(options.workers)]
        for w in workers:
            w.start()
        print(f"{'t(s)':>6} {'RSS MiB':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'resident':>9} {'anon seen':>10}  statuses", flush=True)
        seen = [0] * options.workers
        totals = collections.Counter()
        all_count = all_errors = 0
        next_report = start + options.interval
        window = {"count": 0, "latencies": [], "statuses": collections.Counter(), "errors": 0}
        while True:
            now = time.time()
            if now >= next_report or now > stop_at + 1:
                elapsed = now - start
                lat = sorted(window["latencies"])
                rss = server.rss_bytes()
                row = {"t_s": round(elapsed), "rss_mib": round(rss / 2**20, 1) if rss else None,
                       "req_per_s": round(window["count"] / options.interval),
                       "p50_ms": round(percentile(lat, 0.50) * 1000, 2),
                       "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
                       "resident_tenants": resident_tenants(http),
                       "anonymous_seen": sum(seen),
                       "statuses": " ".join(f"{k}:{v}" for k, v in
                                            sorted(window["statuses"].items())),
                       "errors": window["errors"]}
                rows.append(row)
                print(f"{row['t_s']:>6} {row['rss_mib']:>8} {row['req_per_s']:>8} "
                      f"{row['p50_ms']:>8} {row['p99_ms']:>8} {str(row['resident_tenants']):>9} "
                      f"{row['anonymous_seen']:>10}  {row['statuses']}"
                      + (f" conn-errors:{row['errors']}" if row["errors"] else ""), flush=True)
                window = {"count": 0, "latencies": [], "statuses": collections.Counter(),
                          "errors": 0}
                next_report += options.interval
                if now > stop_at + 1:
                    break
            try:
                i, count, statuses, latencies, errors, s = results.get(timeout=0.5)
            except queue.Empty:
                if server.process.poll() is not None:
                    raise RuntimeError(f"anyai-server exited ({server.process.returncode}) "
                                       f"during the soak:\n{server.stderr_text()}")
                continue
            window["count"] += count
            window["latencies"].extend(latencies)
            window["statuses"].update(statuses)
            window["errors"] += errors
            totals.update(statuses)
            all_count += count
            all_errors += errors
            seen[i] = s
        for w in workers:
            w.join(timeout=30)
        rss = [r["rss_mib"] for r in rows if r["rss_mib"] is not None]
        print(f"\n{all_count} requests in {options.duration:.0f} s "
              f"({all_count / options.duration:.0f}/s), {sum(seen)} distinct anonymous tenants, "
              f"{len(keys)} keyed; answers {dict(sorted(totals.items()))}; connection errors "
              f"{all_errors}; RSS min/max {min(rss, default=0)}/{max(rss, default=0)} MiB, "
              f"last {rss[-1] if rss else None} MiB", flush=True)
    finally:
        code = server.stop(options.keep_server_log)
        print(f"anyai-server stopped: exit status {code}", flush=True)
    if options.csv:
        with open(options.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["t_s"])
            writer.writeheader()
            writer.writerows(rows)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
