"""Shared helpers of the deploy/ tests (tests/deploy/*_test.py).

- REPO: the repository root; deploy/ files are read from there.
- ServerProcess: a real `anyai-server` on 127.0.0.1 port 0 with a temp data dir, whose bound
  ports are read from its stdout ("grpc listening on HOST:PORT", "http listening on HOST:PORT").
- promql_selectors(): the metric names, label matchers and grouping labels of a PromQL
  expression, without a PromQL library (none is packaged for Debian's Python).
- families_from_exposition() / families_from_source(): the metric families the server exports,
  from a live scrape (the truth) or from server/metrics/metrics.cc (the declarations).
- run_tests(): unittest.main() after taking this suite's own --flags off argv.

Not thread-safe; each test process uses it from one thread.
"""

import ctypes
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(REPO, "deploy")

# Values of this suite's flags, filled by run_tests().
ARGS = {}

_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """preexec_fn: SIGKILL the child when the test process dies (e.g. a ctest timeout)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_tests(flags=()):
    """Takes `--name=value` for each name in `flags` off argv into ARGS, then unittest.main()."""
    rest = [sys.argv[0]]
    for arg in sys.argv[1:]:
        m = re.match(r"^--([a-z_]+)=(.*)$", arg)
        if m and m.group(1) in flags:
            ARGS[m.group(1)] = m.group(2)
        else:
            rest.append(arg)
    for name in flags:
        if name not in ARGS:
            sys.exit("missing --%s=..." % name)
    unittest.main(argv=rest, verbosity=2)


def free_port():
    """A TCP port free on every address a moment ago (for programs that cannot take 0). It is
    drawn below Linux's ephemeral range (32768-60999), where every listener on port 0 and every
    outgoing connection of the tests running beside this one take theirs: a port the kernel had
    handed out here was taken by one of them before the server bound it."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def http_get(url, timeout=10.0):
    """(status, headers, body bytes) of a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def http_post_json(url, body, headers=None, timeout=10.0):
    """(status, body bytes) of a POST of JSON text `body`."""
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class HttpFrontMissing(Exception):
    """The server started but did not say where its HTTP front listens, or does not serve
    GET /metrics there."""


def require_metrics(server):
    """The body of GET /metrics on `server`'s HTTP port; HttpFrontMissing if not served."""
    status, headers, body = http_get(server.http_url + "/metrics")
    if status != 200:
        raise HttpFrontMissing(
            "anyai-server's HTTP front answers GET /metrics with %d, not 200: Metrics::Render() "
            "is not served on the HTTP port yet. Body: %r" % (status, body[:300]))
    return body.decode()


class ServerProcess:
    """One anyai-server child on 127.0.0.1 port 0 (gRPC and HTTP) with its own temp data dir.

        with ServerProcess(binary) as server:
            http_get(server.http_url + "/metrics")

    start() waits for the "grpc listening on" line and, unless require_http=False, for the
    "http listening on" line, and raises HttpFrontMissing if the gRPC line came and the HTTP
    one did not within `http_grace` seconds. Stopped with SIGTERM, then SIGKILL.
    With listen_flags=False it gets no --grpc_listen/--http_listen, so that a config file in
    extra_args says where it listens.
    """

    START_TIMEOUT_S = 60.0

    def __init__(self, binary, extra_args=(), require_http=True, http_grace=10.0,
                 listen_flags=True):
        self.binary = binary
        self.listen_flags = listen_flags
        self.extra_args = list(extra_args)
        self.require_http = require_http
        self.http_grace = http_grace
        self.dir = None
        self.process = None
        self.grpc_address = None
        self.http_address = None
        self.stdout_lines = []
        self._lines = queue.Queue()

    @property
    def http_url(self):
        return "http://" + self.http_address

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="anyai-deploy-")
        env = {k: v for k, v in os.environ.items() if k != "ANYAI_ADMIN_TOKEN"}
        listen = ["--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0"]
        # The Admin listener is on port 0 even with listen_flags=False (a config file may leave
        # admin_listen at its default, 127.0.0.1:50052, which parallel tests would share).
        args = ([self.binary] + (listen if self.listen_flags else []) +
                ["--admin_listen=127.0.0.1:0", "--data_dir=" + os.path.join(self.dir, "data")] +
                self.extra_args)
        self._stderr = open(os.path.join(self.dir, "server.stderr"), "wb")
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=self._stderr, env=env,
                                        preexec_fn=die_with_parent)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        deadline = time.monotonic() + self.START_TIMEOUT_S
        try:
            while self.grpc_address is None or (self.require_http and self.http_address is None):
                now = time.monotonic()
                if self.grpc_address is not None:
                    deadline = min(deadline, self._grpc_seen + self.http_grace)
                if now >= deadline:
                    if self.grpc_address is not None:
                        raise HttpFrontMissing(
                            "anyai-server printed 'grpc listening on %s' but no 'http listening "
                            "on HOST:PORT' line within %.0f s: the HTTP front (and with it GET "
                            "/metrics) is not wired into anyai-server yet. stdout: %r"
                            % (self.grpc_address, self.http_grace, self.stdout_lines))
                    raise RuntimeError("anyai-server did not start in %.0f s; stderr:\n%s"
                                       % (self.START_TIMEOUT_S, self.stderr()))
                try:
                    line = self._lines.get(timeout=deadline - now)
                except queue.Empty:
                    continue
                if line is None:
                    raise RuntimeError("anyai-server exited with %s before listening; stderr:\n%s"
                                       % (self.process.wait(), self.stderr()))
                m = re.match(r"^(grpc|http) listening on (\S+)\s*$", line)
                if m and m.group(1) == "grpc":
                    self.grpc_address = m.group(2)
                    self._grpc_seen = time.monotonic()
                elif m:
                    self.http_address = m.group(2)
        except BaseException:
            self.stop()
            raise

    def _read_stdout(self):
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def stderr(self):
        try:
            with open(os.path.join(self.dir, "server.stderr"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.process.stdout.close()
            self._stderr.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# --- Metric families ---------------------------------------------------------------------------

# Series that Prometheus itself adds to every target or writes from alerting rules.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                     "scrape_samples_post_metric_relabeling", "scrape_series_added",
                     "ALERTS", "ALERTS_FOR_STATE"}
# Labels that Prometheus attaches to every scraped series (deploy/prometheus/prometheus.yml).
TARGET_LABELS = {"job", "instance", "service"}


class Family:
    """One metric family: its type and, per label name, the values seen (None: unknown)."""

    def __init__(self, name, type_):
        self.name = name
        self.type = type_
        self.labels = {}  # label name -> set of values, or None when not known

    def series_names(self):
        """The sample names a query may use for this family."""
        if self.type == "histogram":
            return {self.name + "_bucket", self.name + "_sum", self.name + "_count"}
        if self.type == "summary":
            return {self.name, self.name + "_sum", self.name + "_count"}
        return {self.name}

    def series_labels(self, series):
        """The label names a sample `series` of this family carries."""
        extra = set()
        if series == self.name + "_bucket":
            extra = {"le"}
        elif self.type == "summary" and series == self.name:
            extra = {"quantile"}
        return set(self.labels) | extra


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+(?:\s+\S+)?$")
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def families_from_exposition(text):
    """{family name: Family} from the Prometheus text format (version 0.0.4)."""
    families = {}
    by_series = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, type_ = line.split(None, 3)
            families[name] = Family(name, type_.strip())
            for s in families[name].series_names():
                by_series[s] = families[name]
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("not a sample line: %r" % line)
        family = by_series.get(m.group(1))
        if family is None:
            family = families.setdefault(m.group(1), Family(m.group(1), "untyped"))
            by_series[m.group(1)] = family
        for label, value in _LABEL_PAIR.findall(m.group(2) or ""):
            if (label == "le" and family.type == "histogram") or (
                    label == "quantile" and family.type == "summary"):
                continue
            family.labels.setdefault(label, set()).add(value)
    return families


def families_from_source(path=os.path.join(REPO, "server", "metrics", "metrics.cc")):
    """{family name: Family} as declared in server/metrics/metrics.cc, with every label name declared
    anywhere in that file on each family (values unknown): the declarations, not the truth."""
    with open(path) as f:
        source = f.read()
    families = {}
    for kind, name in re.findall(
            r'Build(Counter|Gauge|Histogram|Summary)\(\)\s*\.Name\("([^"]+)"\)', source):
        families[name] = Family(name, kind.lower())
    # Family("name", "help" "help...", MetricType::Kind) and add("name", "help", MetricType::...)
    for name, kind in re.findall(
            r'\b(?:Family|add)\(\s*"([a-z_:][a-z0-9_:]*)",\s*(?:"(?:[^"\\]|\\.)*"\s*)+,'
            r'\s*MetricType::(\w+)', source):
        families[name] = Family(name, kind.lower())
    labels = set(re.findall(r'\{\s*"([a-z_][a-z0-9_]*)",', source))
    for family in families.values():
        family.labels = {label: None for label in labels}
    return families


# --- PromQL ------------------------------------------------------------------------------------

_FUNCTIONS_AND_KEYWORDS = {
    # aggregation operators
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile",
    # keywords and set operators
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and",
    "or", "unless", "atan2", "inf", "nan",
}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_TOKEN = re.compile(r'''
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>(?:0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+)
                (?:[a-zA-Z][a-zA-Z0-9]*)*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@:])
''', re.X)

# Grafana's built-in interval variables, as a duration PromQL accepts.
_GRAFANA_INTERVALS = re.compile(
    r"\$__(?:rate_interval|interval|range)\b|\$\{__(?:rate_interval|interval|range)\}")


def grafana_to_promql(expr):
    """A Grafana panel query as PromQL: interval variables become 5m; other $variables stay
    inside label values, where the dashboard uses them."""
    return _GRAFANA_INTERVALS.sub("5m", expr)


def _tokens(expr):
    pos = 0
    out = []
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError("cannot read PromQL at %r" % expr[pos:pos + 30])
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def promql_selectors(expr):
    """What an expression reads: ([(metric, [(label, op, value)])], {grouping label names}).
    Label values are unquoted (escapes left as written)."""
    tokens = _tokens(grafana_to_promql(expr))
    selectors = []
    grouping = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "ident" and text in _GROUPING and following == "(":
            i += 2
            while tokens[i][1] != ")":
                if tokens[i][0] == "ident":
                    grouping.add(tokens[i][1])
                i += 1
            i += 1
            continue
        if kind == "ident" and (following == "(" or text in _FUNCTIONS_AND_KEYWORDS):
            i += 1
            continue
        if kind == "ident" or (kind == "op" and text == "{"):
            name = text if kind == "ident" else None
            matchers = []
            if kind == "ident":
                i += 1
            if i < len(tokens) and tokens[i][1] == "{":
                i += 1
                while tokens[i][1] != "}":
                    if tokens[i][1] == ",":
                        i += 1
                        continue
                    label, op, value = tokens[i][1], tokens[i + 1][1], tokens[i + 2][1]
                    matchers.append((label, op, value[1:-1]))
                    i += 3
                i += 1
            if name is None:
                name = next((v for l, o, v in matchers if l == "__name__" and o == "="), None)
                if name is None:
                    raise ValueError("a selector without a metric name in %r" % expr)
            selectors.append((name, matchers))
            continue
        i += 1
    return selectors, grouping


def check_expression(expr, families, live):
    """Problems (strings) with the metrics and labels that `expr` reads, given the exported
    `families`. With `live`, label values of equality matchers must also be exported."""
    problems = []
    by_series = {}
    for family in families.values():
        for s in family.series_names():
            by_series[s] = family
    all_labels = set(TARGET_LABELS) | {"le", "quantile"}
    for family in families.values():
        all_labels |= set(family.labels)
    selectors, grouping = promql_selectors(expr)
    if not selectors:
        problems.append("reads no metric: %s" % expr)
    for name, matchers in selectors:
        if name in PROMETHEUS_SERIES:
            continue
        family = by_series.get(name)
        if family is None:
            problems.append("unknown metric %s in: %s" % (name, expr))
            continue
        known = family.series_labels(name) | TARGET_LABELS
        for label, op, value in matchers:
            if label not in known:
                problems.append("%s has no label %s (it has %s) in: %s"
                                % (name, label, sorted(family.series_labels(name)), expr))
            elif (live and op == "=" and "$" not in value and label not in TARGET_LABELS
                  and label in family.labels and value not in family.labels[label]):
                problems.append("%s never has %s=%r (values: %s) in: %s"
                                % (name, label, value, sorted(family.labels[label]), expr))
    for label in grouping - all_labels:
        problems.append("groups by %s, which no metric has, in: %s" % (label, expr))
    return problems


def dashboard_expressions(dashboard):
    """[(where, PromQL)] of every panel target and query variable of a Grafana dashboard."""
    out = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append(("panel %r target %s" % (p.get("title"), t.get("refId")), t["expr"]))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.match(r"^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$", query or "")
        if m:
            out.append(("variable %r" % v["name"], m.group(1)))
        elif query:
            out.append(("variable %r" % v["name"], query))
    return out


def alert_expressions(rules):
    """[(where, PromQL)] of every rule of a Prometheus rules file (parsed YAML)."""
    return [("rule %s" % (r.get("alert") or r.get("record")), r["expr"])
            for g in rules["groups"] for r in g["rules"]]
