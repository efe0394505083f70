"""deploy_prometheus_scrape: a real Prometheus (Debian's) on loopback scrapes a real anyai-server
under a short load, and its HTTP API then has the request and 429 rates.

  1. anyai-server on 127.0.0.1 port 0 (ports read from its stdout);
  2. prometheus scraping its GET /metrics every second, with deploy/prometheus/alerts.yml as
     its rule file, on a free loopback port with a temp TSDB;
  3. once Prometheus has scraped the server (up == 1): 15 anonymous chat completions over HTTP
     with an open-weights model, i.e. class llm on the free plan (10 a minute): 10 answered
     and 5 refused with 429;
  4. polling Prometheus's /api/v1/query (bounded, 45 s) until the request rate, the 429 count
     and the refusals by class and plan are there; then the exact counter values;
  5. every alert rule loaded and evaluated without error, and every dashboard query accepted by
     this Prometheus.

Needs the HTTP front wired into anyai-server (GET /metrics and the chat endpoint on the HTTP
port); until then it fails at step 1 with a message that says so.

Usage: prometheus_scrape_test.py --server=build/bin/anyai-server --prometheus=/usr/bin/prometheus
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse

import deploy_testing
from deploy_testing import (DEPLOY, ServerProcess, dashboard_expressions, die_with_parent,
                            free_port, grafana_to_promql, http_get, http_post_json,
                            require_metrics)

POLL_TIMEOUT_S = 45.0
CHAT = json.dumps({"model": "llama-3-70b-chat",
                   "messages": [{"role": "user", "content": "Say hello."}]})


class PrometheusScrapeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="anyai-prometheus-")
        cls.prometheus = None
        cls.server = ServerProcess(deploy_testing.ARGS["server"])
        try:
            cls.server.start()
            require_metrics(cls.server)  # fail now, not after Prometheus's timeouts
            cls.start_prometheus()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_prometheus(cls):
        config = os.path.join(cls.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "rule_files:\n  - %s\n"
                    "scrape_configs:\n  - job_name: anyai\n    metrics_path: /metrics\n"
                    "    static_configs:\n      - targets: ['%s']\n"
                    % (os.path.join(DEPLOY, "prometheus", "alerts.yml"),
                       cls.server.http_address))
        cls.prometheus_url = "http://127.0.0.1:%d" % free_port()
        cls.prometheus_log = open(os.path.join(cls.dir, "prometheus.log"), "wb")
        cls.prometheus = subprocess.Popen(
            [deploy_testing.ARGS["prometheus"], "--config.file=" + config,
             "--storage.tsdb.path=" + os.path.join(cls.dir, "tsdb"),
             "--web.listen-address=" + cls.prometheus_url[len("http://"):],
             "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=cls.prometheus_log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
        cls.wait_for(lambda: cls.get_ready(), "Prometheus to be ready")

    @classmethod
    def tearDownClass(cls):
        if cls.prometheus is not None and cls.prometheus.poll() is None:
            cls.prometheus.terminate()
            try:
                cls.prometheus.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cls.prometheus.kill()
                cls.prometheus.wait()
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def prometheus_output(cls):
        with open(os.path.join(cls.dir, "prometheus.log"), errors="replace") as f:
            return f.read()[-3000:]

    @classmethod
    def get_ready(cls):
        if cls.prometheus.poll() is not None:
            raise AssertionError("prometheus exited with %s:\n%s"
                                 % (cls.prometheus.returncode, cls.prometheus_output()))
        try:
            return http_get(cls.prometheus_url + "/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    @classmethod
    def wait_for(cls, probe, what, timeout=POLL_TIMEOUT_S):
        """Polls `probe` (returns a truthy result when done) every 0.5 s, bounded."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %.0f s waiting for %s; prometheus log:\n%s"
                                     % (timeout, what, cls.prometheus_output()))
            time.sleep(0.5)

    @classmethod
    def query(cls, expr):
        """The result list of an instant query; raises on an error status."""
        url = cls.prometheus_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, _, body = http_get(url)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError("query %r: %s %s" % (expr, status, body[:500]))
        return answer["data"]["result"]

    @classmethod
    def wait_for_first_scrape(cls):
        def scraped():
            if cls.query('up{job="anyai"} == 1'):
                return True
            targets = json.loads(http_get(cls.prometheus_url + "/api/v1/targets")[2])
            cls.last_scrape_errors = [t.get("lastError") for t in
                                      targets["data"]["activeTargets"] if t.get("lastError")]
            return False

        cls.last_scrape_errors = []
        try:
            cls.wait_for(scraped, "the first successful scrape")
        except AssertionError as e:
            raise AssertionError("%s\nscrape errors: %s" % (e, cls.last_scrape_errors))

    def test_prometheus_sees_the_request_and_429_rates_under_load(self):
        # Counters start at 0 when the server starts; scrape that first, so that increase()
        # and rate() see the load as an increase rather than as the series' first value.
        self.wait_for_first_scrape()

        codes = [http_post_json(self.server.http_url + "/v1/chat/completions", CHAT)[0]
                 for _ in range(15)]
        self.assertEqual(codes, [200] * 10 + [429] * 5)

        rate = self.wait_for(lambda: self.query(
            'sum(rate(anyai_requests_total{job="anyai",endpoint="chat_completions"}[30s])) > 0'),
            "the chat request rate")
        print("chat requests/s over 30s:", rate[0]["value"][1])
        throttled = self.wait_for(lambda: self.query(
            'sum(increase(anyai_requests_total{job="anyai",code="429"}[1m])) > 0'),
            "the 429 count")
        print("429s in the last minute (extrapolated):", throttled[0]["value"][1])
        refusals = self.wait_for(lambda: self.query(
            'sum by (feature_class, plan) '
            '(increase(anyai_quota_decisions_total{job="anyai",outcome="refused"}[1m])) > 0'),
            "the refusals by feature class and plan")
        self.assertEqual([r["metric"] for r in refusals], [{"feature_class": "llm",
                                                            "plan": "free"}])

        # The exact counts that Prometheus stored from the last scrape.
        def counter(expr, want):
            result = self.query(expr)
            return result if result and float(result[0]["value"][1]) == want else None

        self.wait_for(lambda: counter(
            'sum(last_over_time(anyai_requests_total{job="anyai",endpoint="chat_completions",'
            'transport="http",code="200"}[10s]))', 10), "10 answered chats")
        self.wait_for(lambda: counter(
            'sum(last_over_time(anyai_requests_total{job="anyai",endpoint="chat_completions",'
            'transport="http",code="429"}[10s]))', 5), "5 refused chats")
        self.wait_for(lambda: counter(
            'sum(last_over_time(anyai_quota_decisions_total{job="anyai",feature_class="llm",'
            'plan="free",outcome="refused",window="1m"}[10s]))', 5), "5 refusals of the 1m window")
        self.wait_for(lambda: self.query(
            'histogram_quantile(0.99, sum by (le, endpoint) (rate('
            'anyai_request_duration_seconds_bucket{job="anyai",endpoint="chat_completions"}[1m])))'
            ' > 0'), "a p99 latency of chat_completions")

    def test_alert_rules_load_and_evaluate_in_prometheus(self):
        def evaluated():
            url = self.prometheus_url + "/api/v1/rules"
            groups = json.loads(http_get(url)[2])["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            # A rule's health is "unknown" until its first evaluation.
            if rules and all(r.get("health") != "unknown" for r in rules):
                return rules
            return None

        rules = self.wait_for(evaluated, "every alert rule to be evaluated")
        self.assertGreaterEqual(len(rules), 5)
        for r in rules:
            with self.subTest(rule=r["name"]):
                self.assertEqual(r["health"], "ok", r.get("lastError"))

    def test_every_dashboard_query_runs_in_prometheus(self):
        self.wait_for_first_scrape()
        with open(os.path.join(DEPLOY, "grafana", "anyai-dashboard.json")) as f:
            dashboard = json.load(f)
        for where, expr in dashboard_expressions(dashboard):
            with self.subTest(query=where):
                promql = grafana_to_promql(expr).replace("$job", ".*").replace("$instance", ".*")
                self.query(promql)  # raises on a query Prometheus rejects


if __name__ == "__main__":
    deploy_testing.run_tests(flags=("server", "prometheus"))
