"""deploy_dashboard_metrics: the Grafana dashboard and the alert rules query only what
anyai-server really exports, and deploy/README.md documents exactly that.

Where the list of metric families comes from, printed by the test:
  1. a live scrape: a real anyai-server on port 0, GET /metrics on its HTTP port (metric names,
     types, label names and label values: an equality matcher on a value the server never
     exports, e.g. code="428", fails);
  2. while anyai-server has no HTTP /metrics yet: the declarations in server/metrics/metrics.cc (names,
     types, and label names only). deploy_live_metrics fails meanwhile, so this fallback cannot
     hide a missing /metrics.

Also: the dashboard is Grafana dashboard JSON with a Prometheus data source variable; every
query is valid PromQL (promtool parses it as a recording rule); the dashboard has the panels of
the issue (request and 429 rates by class and plan, latency p50/p99 per endpoint, tenants,
storage backlog and latency, upstream errors, process CPU and RSS).

Usage: dashboard_metrics_test.py --server=build/bin/anyai-server --promtool=/usr/bin/promtool
"""

import json
import os
import re
import subprocess
import tempfile
import unittest

import yaml

import deploy_testing
from deploy_testing import (DEPLOY, HttpFrontMissing, ServerProcess, alert_expressions,
                            check_expression, dashboard_expressions, families_from_exposition,
                            families_from_source, grafana_to_promql, http_get)

DASHBOARD = os.path.join(DEPLOY, "grafana", "anyai-dashboard.json")
ALERTS = os.path.join(DEPLOY, "prometheus", "alerts.yml")


def scrape_live(binary):
    """(families, None) from a live scrape, or (None, why not)."""
    try:
        with ServerProcess(binary, http_grace=5.0) as server:
            status, headers, body = http_get(server.http_url + "/metrics")
            if status != 200:
                return None, "GET /metrics answered %d" % status
            return families_from_exposition(body.decode()), None
    except HttpFrontMissing as e:
        return None, str(e)


class DashboardMetricsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD) as f:
            cls.dashboard = json.load(f)
        with open(ALERTS) as f:
            cls.alerts = yaml.safe_load(f)
        cls.expressions = dashboard_expressions(cls.dashboard) + alert_expressions(cls.alerts)
        cls.families, why_not = scrape_live(deploy_testing.ARGS["server"])
        cls.live = cls.families is not None
        if cls.live:
            print("metric source: LIVE scrape of anyai-server's GET /metrics (%d families)"
                  % len(cls.families))
        else:
            cls.families = families_from_source()
            print("metric source: FALLBACK to the declarations in server/metrics/metrics.cc (%d "
                  "families), because no live scrape: %s" % (len(cls.families), why_not))

    # --- What is queried exists -----------------------------------------------------------------

    def test_every_query_reads_only_exported_metrics_and_labels(self):
        problems = []
        for where, expr in self.expressions:
            problems += ["%s: %s" % (where, p)
                         for p in check_expression(expr, self.families, self.live)]
        self.assertEqual(problems, [], "\n".join(problems))

    def test_live_scrape_and_declarations_agree(self):
        if not self.live:
            self.skipTest("no live scrape yet (see the metric source above)")
        declared = {n: f.type for n, f in families_from_source().items()}
        scraped = {n: f.type for n, f in self.families.items()}
        self.assertEqual(scraped, declared)

    def test_every_query_is_valid_promql(self):
        # promtool parses a recording rule's expression with Prometheus's own parser.
        rules = {"groups": [{"name": "parse", "rules": [
            {"record": "anyai:parse_%d" % i, "expr": grafana_to_promql(expr)}
            for i, (_, expr) in enumerate(self.expressions)]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="anyai-dashboard-") as f:
            yaml.safe_dump(rules, f)
            f.flush()
            result = subprocess.run([deploy_testing.ARGS["promtool"], "check", "rules", f.name],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + "\n".join(
            "%d: %s" % (i, e) for i, (_, e) in enumerate(self.expressions)))

    # --- The dashboard is a Grafana dashboard with the issue's panels ---------------------------

    def panels(self):
        def walk(items):
            for p in items:
                yield p
                yield from walk(p.get("panels", []))
        return list(walk(self.dashboard["panels"]))

    def test_dashboard_is_grafana_json_with_a_prometheus_datasource_variable(self):
        self.assertGreaterEqual(self.dashboard["schemaVersion"], 36)
        self.assertTrue(self.dashboard["title"])
        self.assertTrue(self.dashboard["uid"])
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        ids = [p["id"] for p in self.panels()]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        for p in self.panels():
            if p["type"] == "row":
                continue
            with self.subTest(panel=p["title"]):
                self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"})
                self.assertTrue(p["targets"])
                for t in p["targets"]:
                    self.assertEqual(t["datasource"]["uid"], "${datasource}")
                grid = p["gridPos"]
                self.assertLessEqual(grid["x"] + grid["w"], 24)

    def test_dashboard_has_the_panels_of_the_issue(self):
        queries = [t["expr"] for p in self.panels() for t in p.get("targets", [])]

        def some(pattern):
            return any(re.search(pattern, q) for q in queries)

        wanted = {
            "request rate": r"rate\(anyai_requests_total",
            "429 rate": r'anyai_requests_total\{[^}]*code="429"',
            "refusals by class and plan":
                r'sum by \(feature_class, plan\) \(rate\(anyai_quota_decisions_total\{[^}]*'
                r'outcome="refused"',
            "latency p50 per endpoint":
                r"histogram_quantile\(0\.5, sum by \(le, endpoint\) "
                r"\(rate\(anyai_request_duration_seconds_bucket",
            "latency p99 per endpoint":
                r"histogram_quantile\(0\.99, sum by \(le, endpoint\) "
                r"\(rate\(anyai_request_duration_seconds_bucket",
            "tenants resident": r"anyai_tenants_resident",
            "storage backlog": r"anyai_storage_writes_in_flight",
            "storage write latency": r"anyai_storage_write_seconds_sum",
            "upstream errors": r'anyai_upstream_requests_total\{[^}]*outcome="error"',
            "process CPU": r"rate\(process_cpu_seconds_total",
            "process RSS": r"process_resident_memory_bytes",
        }
        missing = [what for what, pattern in wanted.items() if not some(pattern)]
        self.assertEqual(missing, [])

    # --- deploy/README.md documents every metric ------------------------------------------------

    def test_readme_metrics_table_lists_every_family_with_its_type(self):
        with open(os.path.join(DEPLOY, "README.md")) as f:
            readme = f.read()
        rows = re.findall(r"(?m)^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*(\w+)\s*\|", readme)
        documented = dict(rows)
        self.assertEqual(len(rows), len(documented), "a metric is documented twice")
        self.assertEqual(documented, {n: f.type for n, f in families_from_source().items()})


if __name__ == "__main__":
    deploy_testing.run_tests(flags=("server", "promtool"))
