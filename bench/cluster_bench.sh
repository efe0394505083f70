#!/usr/bin/env bash
# Throughput through HAProxy (deploy/haproxy/anyai.cfg, rendered for loopback ports by
# tests/cluster/haproxy_process.py) in front of 3 anyai-server replicas in cluster mode against
# 1 replica behind the same proxy, and 1 replica asked directly (the proxy's own cost), with a
# throwaway PostgreSQL (tests/testing/postgres_instance.py) as the key registry and hand-off
# store. HTTP: wrk, POST /v1/chat/completions cycling over 30 keys (so the tenants spread over
# the replicas); gRPC: h2load, CreateChatCompletion, 3 keys (on 3 different replicas when there
# are 3) in 3 parallel h2load runs. Limits
# are bench/bench-config.textproto's (never reached): every call is an admission.
# Per replica: CPU (utime+stime from /proc/PID/stat before/after) per chat it answered (from
# its own /metrics), and haproxy's CPU per call.
#
# On a 2-core machine the 3 replicas, haproxy and the load generator share 2 cores: the figures
# show the proxy's and the extra processes' overhead, not scaling. Per-replica capacity is
# estimated as 1 / (CPU seconds per request) for one core.
#
# Usage: bench/cluster_bench.sh [BUILD_DIR (build)] [SECONDS (10)] [CONNECTIONS (32)]
# Needs: scripts/install-deps.sh --bench (wrk, h2load from nghttp2-client, haproxy, postgresql).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
[[ -x "$build/bin/anyai-server" && -d "$build/python" ]] ||
  { echo "build $build first (anyai-server, anyai-admin, anyai_proto_python)" >&2; exit 1; }
for tool in wrk h2load haproxy; do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] ||
    { echo "$tool not found: scripts/install-deps.sh --bench" >&2; exit 1; }
done
exec /usr/bin/python3 - "$build" "${2:-10}" "${3:-32}" <<'PYTHON'
import json, os, re, struct, subprocess, sys, tempfile, time
build, seconds, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
root = os.getcwd()
sys.path[:0] = [os.path.join(root, "tests/e2e"), os.path.join(root, "tests/cluster"),
                os.path.join(root, "tests/testing"), os.path.join(root, build, "python")]
import anyai_server_process, haproxy_process, postgres_instance  # noqa: E402
os.environ.update(no_grpc_proxy="127.0.0.1", NO_PROXY="127.0.0.1,localhost")
import grpc  # noqa: E402
from anyai.v1 import admin_pb2, anyai_pb2  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
MODEL = "llama-3-8b-chat"
work = tempfile.mkdtemp(prefix="anyai-cluster-bench-")
config = os.path.join(work, "config.textproto")
with open(os.path.join(root, "bench/bench-config.textproto")) as f:
    open(config, "w").write(f.read() + '\ntrusted_proxies: "127.0.0.1/32"\n')


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def chats(server):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return sum(float(v) for v in re.findall(
        r'^anyai_requests_total\{[^}]*endpoint="chat_completions"[^}]*\} (\S+)$', text, re.M))


def probe(port, key):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/v1/chat/completions", body=json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}),
        headers={"content-type": "application/json", "authorization": "Bearer " + key})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        print(f"  probe: {r.status} {body[:300]!r}", flush=True)


def run_wrk(port, keys):
    probe(port, keys[0])
    lua = os.path.join(work, "keys.lua")
    with open(lua, "w") as f:
        f.write('local keys = {%s}\nlocal i = 0\n' % ",".join('"%s"' % k for k in keys))
        f.write('local body = \'{"model":"%s","messages":[{"role":"user","content":"hello"}]}\'\n'
                % MODEL)
        f.write('request = function()\n  i = i % #keys + 1\n  return wrk.format("POST", '
                '"/v1/chat/completions", {["Content-Type"]="application/json", '
                '["Authorization"]="Bearer " .. keys[i]}, body)\nend\n')
        # The first refusal's status and body, so that a misconfigured run says why.
        f.write('local told = false\nresponse = function(status, headers, body)\n'
                '  if status ~= 200 and not told then told = true; print("first non-2xx: " .. '
                'status .. " " .. body) end\nend\n')
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", lua,
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    first = re.search(r"^first non-2xx: .*$", out, re.M)
    if first:
        print("  wrk " + first.group(0)[:300], flush=True)
    return rps, int(non2xx.group(1)) if non2xx else 0


def run_h2load(port, keys):
    msg = anyai_pb2.ChatCompletionRequest(
        model=MODEL, messages=[anyai_pb2.ChatMessage(role="user", content="hello")])
    body = os.path.join(work, "grpc.bin")
    data = msg.SerializeToString()
    open(body, "wb").write(b"\0" + struct.pack(">I", len(data)) + data)
    procs = [subprocess.Popen(
        ["h2load", "-c", str(max(1, conns // len(keys))), "-m", "10", "-D", str(seconds),
         "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers",
         "-H", "authorization: Bearer " + k,
         f"http://127.0.0.1:{port}/anyai.v1.AnyAI/CreateChatCompletion"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in keys]
    total = 0.0
    for p in procs:
        out = p.communicate()[0]
        m = re.search(r"finished in \S+, ([\d.]+) req/s", out)
        total += float(m.group(1)) if m else 0.0
    return total


def grpc_keys(servers, port, keys):
    """3 keys for the h2load runs, owned by as many different replicas as there are (one
    probe chat through the proxy per key, its owner read from the replicas' /metrics)."""
    chosen, owners = [], set()
    for key in keys:
        before = [chats(s) for s in servers]
        probe(port, key)
        grew = [i for i, (s, b) in enumerate(zip(servers, before)) if chats(s) > b]
        if grew and (grew[0] not in owners or len(owners) == len(servers)):
            owners.add(grew[0])
            chosen.append(key)
        if len(chosen) == 3:
            return chosen
    return (chosen + keys)[:3]


def keys_on(servers):
    ch = grpc.insecure_channel(servers[0].admin_address)
    create = ch.unary_unary("/anyai.v1.Admin/CreateKey",
                            request_serializer=admin_pb2.CreateKeyRequest.SerializeToString,
                            response_deserializer=admin_pb2.CreateKeyResponse.FromString)
    keys = [create(admin_pb2.CreateKeyRequest(plan="free", label="bench"),
                   metadata=(("authorization", "Bearer bench"),), timeout=10).key
            for _ in range(30)]
    ch.close()
    return keys


def measure(label, servers, proxy, http_port, grpc_port, keys):
    rows = []
    for proto in ("http", "grpc"):
        before = [(cpu_seconds(s.process.pid), chats(s)) for s in servers]
        proxy_before = cpu_seconds(proxy.process.pid) if proxy else 0.0
        if proto == "http":
            rps, errors = run_wrk(http_port, keys)
        else:
            rps, errors = run_h2load(grpc_port, grpc_keys(servers, http_port, keys)), 0
        after = [(cpu_seconds(s.process.pid), chats(s)) for s in servers]
        proxy_cpu = (cpu_seconds(proxy.process.pid) - proxy_before) if proxy else 0.0
        served = [a[1] - b[1] for a, b in zip(after, before)]
        per = ["%s: %d calls, %.1f us CPU/call" % (
            f"r{i}", n, 1e6 * (a[0] - b[0]) / n if n else 0.0)
            for i, (n, a, b) in enumerate(zip(served, after, before))]
        total = sum(served)
        proxy_txt = (", haproxy %.1f us CPU/call" % (1e6 * proxy_cpu / total)) if proxy and total \
            else ""
        print(f"{label:28s} {proto:4s} {rps:9.0f} req/s  non-2xx {errors}  [{'; '.join(per)}"
              f"{proxy_txt}]", flush=True)
        rows.append((proto, rps, served, after, before))
    return rows


print(f"cluster_bench: {os.cpu_count()} cores, {seconds} s per run, {conns} connections; "
      "chat completions (builtin model), every call admitted", flush=True)
if (os.cpu_count() or 1) <= 2:
    print("NOTE: on 2 cores the replicas, haproxy and the load generators share the same 2 "
          "cores: 3 replicas vs 1 shows the overhead of the proxy and of more processes, not "
          "scaling.", flush=True)
pg = postgres_instance.PostgresInstance().__enter__()
try:
    for n in (1, 3):
        servers = []
        try:
            for _ in range(n):
                s = anyai_server_process.ServerProcess(
                    os.path.join(build, "bin/anyai-server"), admin_token="bench",
                    extra_args=["--config=" + config, "--postgres_dsn=" + pg.dsn])
                s.start()
                servers.append(s)
            keys = keys_on(servers)
            if n == 1:
                measure("1 replica, direct", servers, None, servers[0].http_port,
                        servers[0].port, keys)
            with haproxy_process.HaproxyProcess(
                    [(s.http_port, s.port) for s in servers]) as proxy:
                measure(f"{n} replica(s), via haproxy", servers, proxy, proxy.http_port,
                        proxy.grpc_port, keys)
        finally:
            for s in servers:
                s.stop(check_exit=False)
finally:
    pg.close()
print("Per-replica capacity estimate: 1e6 / (us CPU per call) calls/s for each core a replica "
      "has to itself (e.g. 100 us/call: ~10,000 calls/s per core). On 2 shared cores a gain "
      "of 3 replicas over 1 comes from more threads (each replica's one HTTP I/O thread, its "
      "gRPC pollers) getting CPU that one replica left idle, not from more hardware; the "
      "machine's other load moves these figures between runs.", flush=True)
PYTHON
