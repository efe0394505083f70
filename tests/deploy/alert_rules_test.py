"""deploy_alert_rules: Prometheus's own tool accepts deploy/prometheus and the alerts' unit tests
pass.

- promtool check config prometheus.yml (which also checks the rule file it names);
- promtool check rules alerts.yml;
- promtool test rules alerts_test.yml, whose cases fire and stay quiet for every alert;
- every alert of alerts.yml has a case in alerts_test.yml where it fires and one where it does
  not, so a new alert cannot land untested.

Usage: alert_rules_test.py --promtool=/usr/bin/promtool
"""

import os
import subprocess
import unittest

import yaml

import deploy_testing
from deploy_testing import DEPLOY

PROMETHEUS_DIR = os.path.join(DEPLOY, "prometheus")


class AlertRulesTest(unittest.TestCase):

    def promtool(self, *args):
        result = subprocess.run([deploy_testing.ARGS["promtool"], *args], cwd=PROMETHEUS_DIR,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=120)
        print(result.stdout)
        self.assertEqual(result.returncode, 0, result.stdout)
        return result.stdout

    def test_promtool_check_config_accepts_the_scrape_config(self):
        out = self.promtool("check", "config", "prometheus.yml")
        self.assertIn("SUCCESS", out)

    def test_promtool_check_rules_accepts_the_alert_rules(self):
        out = self.promtool("check", "rules", "alerts.yml")
        self.assertIn("SUCCESS", out)

    def test_promtool_test_rules_passes(self):
        out = self.promtool("test", "rules", "alerts_test.yml")
        self.assertIn("SUCCESS", out)

    def test_every_alert_is_tested_firing_and_quiet(self):
        with open(os.path.join(PROMETHEUS_DIR, "alerts.yml")) as f:
            alerts = {r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]
                      if "alert" in r}
        with open(os.path.join(PROMETHEUS_DIR, "alerts_test.yml")) as f:
            tests = yaml.safe_load(f)
        self.assertEqual(tests["rule_files"], ["alerts.yml"])
        fires, quiet = set(), set()
        for test in tests["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
        self.assertTrue(alerts)
        self.assertEqual(alerts - fires, set(), "alerts never shown firing")
        self.assertEqual(alerts - quiet, set(), "alerts never shown staying quiet")

    def test_scrape_config_loads_the_alert_rules_and_scrapes_job_anyai(self):
        with open(os.path.join(PROMETHEUS_DIR, "prometheus.yml")) as f:
            config = yaml.safe_load(f)
        self.assertIn("alerts.yml", config["rule_files"])
        jobs = {j["job_name"]: j for j in config["scrape_configs"]}
        # alerts.yml's AnyAIInstanceDown and the dashboard's $job expect this job name.
        self.assertIn("anyai", jobs)
        self.assertEqual(jobs["anyai"].get("metrics_path", "/metrics"), "/metrics")


if __name__ == "__main__":
    deploy_testing.run_tests(flags=("promtool",))
