"""deploy_k8s_manifests: the Kubernetes manifests of deploy/k8s agree with the server.

Every YAML document parses and the expected objects are there; the ports, probe paths, volume
mount and config path match what anyai-server really listens on and reads (its defaults in
deploy/config/anyai.textproto, the image's flags in deploy/Dockerfile); the ConfigMap's config
holds only what differs from the defaults (as `anyai-server --print_config` reports them), and
starts a real anyai-server.

Usage: k8s_manifests_test.py --server=build/bin/anyai-server
"""

import glob
import os
import re
import subprocess
import tempfile
import unittest

import yaml

import deploy_testing
from deploy_testing import DEPLOY, ServerProcess


def listen_port(textproto, field):
    m = re.search(r'^%s:\s*"[^"]*:(\d+)"' % field, textproto, re.M)
    if not m:
        raise AssertionError("no %s in the config" % field)
    return int(m.group(1))


def dockerfile_entrypoint():
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    m = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    return yaml.safe_load(m.group(1))


def top_level_fields(textproto):
    """{field name: [its entries' text]} of a textproto's top level, comments left out. An
    entry is one `name: value` line, or a `name {` line through its closing `}`."""
    fields = {}
    depth = 0
    for line in textproto.splitlines():
        line = re.sub(r"\s*#.*$", "", line).rstrip()  # no '#' inside the strings used here
        if not line:
            continue
        if depth == 0:
            name = re.match(r"^\s*(\w+)", line).group(1)
            fields.setdefault(name, []).append("")
        fields[name][-1] += " ".join(line.split()) + "\n"
        depth += line.count("{") - line.count("}")
    return fields


def flag(args, name):
    """The value of the last --name=VALUE in args (absl flags: the last one wins)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith("--%s=" % name)]
    return values[-1] if values else None


class K8sManifestsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.files = sorted(glob.glob(os.path.join(DEPLOY, "k8s", "*.yaml")))
        cls.docs = []
        for path in cls.files:
            with open(path) as f:
                for doc in yaml.safe_load_all(f):
                    if doc is not None:
                        cls.docs.append((os.path.basename(path), doc))
        with open(os.path.join(DEPLOY, "config", "anyai.textproto")) as f:
            cls.defaults = f.read()

    def of_kind(self, kind):
        return [d for _, d in self.docs if d.get("kind") == kind]

    def gateway_services(self):
        """The Services over the anyai-server pods (not HAProxy's anyai-proxy)."""
        return [s for s in self.of_kind("Service")
                if s["spec"]["selector"].get("app.kubernetes.io/component") == "gateway"]

    def named(self, kind, name):
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        self.assertEqual(len(found), 1, "expected one %s %s" % (kind, name))
        return found[0]

    def one(self, kind):
        found = self.of_kind(kind)
        self.assertEqual(len(found), 1, "expected exactly one %s" % kind)
        return found[0]

    @property
    def statefulset(self):
        return self.one("StatefulSet")

    @property
    def pod(self):
        return self.statefulset["spec"]["template"]["spec"]

    @property
    def container(self):
        containers = self.pod["containers"]
        self.assertEqual(len(containers), 1)
        return containers[0]

    def container_port(self, name):
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        self.assertIn(name, ports)
        return ports[name]

    def resolve_port(self, port):
        """A probe's or Service's port, named or numbered, as a number."""
        return self.container_port(port) if isinstance(port, str) else port

    def server_args(self):
        """The server's effective flags: the image's ENTRYPOINT, then the container's args."""
        entrypoint = self.container.get("command") or dockerfile_entrypoint()
        return entrypoint + self.container.get("args", [])

    def print_config(self, *args):
        """The effective config of anyai-server with `args`, as --print_config prints it."""
        env = {k: v for k, v in os.environ.items() if k != "ANYAI_ADMIN_TOKEN"}
        result = subprocess.run([deploy_testing.ARGS["server"], *args, "--print_config"],
                                capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def config_map_effective_config(self):
        with tempfile.TemporaryDirectory(prefix="anyai-k8s-config-") as tmp:
            path = os.path.join(tmp, "anyai.textproto")
            with open(path, "w") as f:
                f.write(self.config_map_config())
            return self.print_config("--config=" + path)

    def config_map_config(self):
        config_path = flag(self.server_args(), "config")
        data = self.named("ConfigMap", "anyai-config")["data"]
        self.assertIn(os.path.basename(config_path), data)
        return data[os.path.basename(config_path)]

    # --- Structure ------------------------------------------------------------------------------

    def test_every_document_has_api_version_kind_and_name(self):
        self.assertTrue(self.files, "no deploy/k8s/*.yaml")
        for path, doc in self.docs:
            with self.subTest(file=path, kind=doc.get("kind")):
                self.assertIn("apiVersion", doc)
                self.assertIn("kind", doc)
                if doc["kind"] != "Kustomization":
                    self.assertTrue(doc["metadata"]["name"])

    def test_has_a_statefulset_two_services_a_config_map_and_a_service_monitor(self):
        kinds = sorted(d["kind"] for _, d in self.docs)
        for kind in ("StatefulSet", "ConfigMap", "ServiceMonitor", "Kustomization"):
            self.assertIn(kind, kinds)
        self.assertEqual(len(self.gateway_services()), 2, kinds)
        self.assertEqual(self.one("ServiceMonitor")["apiVersion"], "monitoring.coreos.com/v1")

    def test_kustomization_lists_every_manifest_but_the_service_monitor(self):
        resources = set(self.one("Kustomization")["resources"])
        # The Secret example is not applied: each installation creates its own Secret.
        expected = {os.path.basename(p) for p in self.files} - {
            "kustomization.yaml", "servicemonitor.yaml", "postgres-secret.example.yaml"}
        self.assertEqual(resources, expected)

    # --- Ports ----------------------------------------------------------------------------------

    def test_container_ports_are_the_server_defaults(self):
        self.assertEqual(self.container_port("grpc"), listen_port(self.defaults, "grpc_listen"))
        self.assertEqual(self.container_port("http"), listen_port(self.defaults, "http_listen"))

    def test_config_map_listens_on_the_container_ports(self):
        # The effective config: the ConfigMap leaves the listen addresses at their defaults.
        config = self.config_map_effective_config()
        self.assertEqual(listen_port(config, "grpc_listen"), self.container_port("grpc"))
        self.assertEqual(listen_port(config, "http_listen"), self.container_port("http"))
        for field in ("grpc_listen", "http_listen"):
            self.assertRegex(config, r'(?m)^%s:\s*"0\.0\.0\.0:' % field,
                             "%s must listen on every interface in a pod" % field)

    def test_admin_listener_stays_on_loopback_and_off_the_pod_ports(self):
        config = self.config_map_effective_config()
        admin = re.search(r'(?m)^admin_listen:\s*"([^"]*):(\d+)"', config)
        self.assertIsNotNone(admin, "no admin_listen in the effective config")
        self.assertEqual(admin.group(1), "127.0.0.1")
        self.assertNotIn(int(admin.group(2)),
                         [p["containerPort"] for p in self.container["ports"]])

    def test_termination_grace_covers_the_drain_delay_and_the_shutdown_grace(self):
        config = self.config_map_effective_config()

        def seconds(field):
            m = re.search(r"(?m)^%s\s*\{([^}]*)\}" % field, config)
            s = re.search(r"seconds:\s*(\d+)", m.group(1)) if m else None
            return int(s.group(1)) if s else 0

        drain, grace = seconds("drain_delay"), seconds("shutdown_grace")
        self.assertGreater(drain, 0, "no drain_delay: a pod would stop before it leaves the "
                           "Service's endpoints")
        # The readiness probe must see the 503 (periodSeconds x failureThreshold) in the drain.
        probe = self.container["readinessProbe"]
        self.assertGreaterEqual(drain, probe["periodSeconds"] * probe["failureThreshold"])
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], drain + grace)

    def test_services_select_the_pods_and_expose_the_container_ports(self):
        pod_labels = self.statefulset["spec"]["template"]["metadata"]["labels"]
        for service in self.gateway_services():
            with self.subTest(service=service["metadata"]["name"]):
                for key, value in service["spec"]["selector"].items():
                    self.assertEqual(pod_labels.get(key), value)
                ports = {p["name"]: p for p in service["spec"]["ports"]}
                self.assertEqual(set(ports), {"grpc", "http"})
                for name, port in ports.items():
                    self.assertEqual(self.resolve_port(port["targetPort"]),
                                     self.container_port(name))
                    self.assertEqual(port["port"], self.container_port(name))

    def test_statefulset_is_governed_by_the_headless_service(self):
        headless = [s for s in self.of_kind("Service") if s["spec"].get("clusterIP") == "None"]
        self.assertEqual(len(headless), 1)
        self.assertEqual(self.statefulset["spec"]["serviceName"], headless[0]["metadata"]["name"])
        self.assertEqual(self.statefulset["spec"]["selector"]["matchLabels"],
                         {k: v for k, v in self.statefulset["spec"]["template"]["metadata"]
                          ["labels"].items()
                          if k in self.statefulset["spec"]["selector"]["matchLabels"]})

    # --- Probes ---------------------------------------------------------------------------------

    def test_readiness_probe_gets_readyz_on_the_http_port(self):
        probe = self.container["readinessProbe"]["httpGet"]
        self.assertEqual(probe["path"], "/readyz")
        self.assertEqual(self.resolve_port(probe["port"]), self.container_port("http"))

    def test_liveness_probe_gets_healthz_on_the_http_port(self):
        probe = self.container["livenessProbe"]["httpGet"]
        self.assertEqual(probe["path"], "/healthz")
        self.assertEqual(self.resolve_port(probe["port"]), self.container_port("http"))

    def test_startup_probe_is_grpc_health_on_the_grpc_port(self):
        probe = self.container["startupProbe"]["grpc"]
        # Kubernetes' gRPC probes take a number, not a port name.
        self.assertIsInstance(probe["port"], int)
        self.assertEqual(probe["port"], self.container_port("grpc"))
        self.assertNotIn("service", probe)  # "": the server's overall health

    # --- Volumes, config, secrets ---------------------------------------------------------------

    def mounts(self):
        return {m["name"]: m for m in self.container["volumeMounts"]}

    def test_data_volume_is_mounted_at_the_data_dir(self):
        data_dir = flag(self.server_args(), "data_dir")
        self.assertEqual(data_dir, "/var/lib/anyai")
        claims = [c["metadata"]["name"] for c in self.statefulset["spec"]["volumeClaimTemplates"]]
        self.assertEqual(len(claims), 1)
        self.assertEqual(self.mounts()[claims[0]]["mountPath"], data_dir)
        template = self.statefulset["spec"]["volumeClaimTemplates"][0]["spec"]
        self.assertIn("ReadWriteOnce", template["accessModes"])
        self.assertTrue(template["resources"]["requests"]["storage"])

    def test_config_flag_points_into_the_mounted_config_map(self):
        config_path = flag(self.server_args(), "config")
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        config_map = "anyai-config"
        mount = [m for m in self.container["volumeMounts"]
                 if volumes.get(m["name"], {}).get("configMap", {}).get("name") == config_map]
        self.assertEqual(len(mount), 1)
        self.assertEqual(os.path.dirname(config_path), mount[0]["mountPath"])
        self.assertTrue(mount[0].get("readOnly"))

    def test_config_map_holds_only_what_differs_from_the_defaults(self):
        given = top_level_fields(self.config_map_config())
        self.assertTrue(given, "the ConfigMap sets nothing")
        defaults = top_level_fields(self.print_config())
        effective = top_level_fields(self.config_map_effective_config())
        for name in given:
            with self.subTest(field=name):
                self.assertNotEqual(effective.get(name), defaults.get(name),
                                    "%s is set to its default in the ConfigMap" % name)

    def test_config_map_data_dir_is_the_volume(self):
        m = re.search(r'(?m)^data_dir:\s*"([^"]*)"', self.config_map_config())
        self.assertEqual(m.group(1), flag(self.server_args(), "data_dir"))

    def test_admin_token_comes_from_a_secret(self):
        env = {e["name"]: e for e in self.container.get("env", [])}
        ref = env["ANYAI_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
        self.assertTrue(ref["name"])
        self.assertTrue(ref["key"])
        self.assertNotIn("admin_token", re.sub(r"#.*", "", self.config_map_config()))

    # --- Security and resources -----------------------------------------------------------------

    def test_runs_as_the_images_non_root_user(self):
        security = self.pod["securityContext"]
        self.assertTrue(security["runAsNonRoot"])
        self.assertNotEqual(security["runAsUser"], 0)
        with open(os.path.join(DEPLOY, "Dockerfile")) as f:
            user = re.search(r"(?m)^USER\s+(\d+)(?::(\d+))?\s*$", f.read())
        self.assertEqual(security["runAsUser"], int(user.group(1)))
        self.assertEqual(security["fsGroup"], int(user.group(2) or user.group(1)))
        container = self.container["securityContext"]
        self.assertFalse(container["allowPrivilegeEscalation"])
        self.assertEqual(container["capabilities"]["drop"], ["ALL"])

    def test_has_resource_requests_and_limits(self):
        resources = self.container["resources"]
        for kind in ("requests", "limits"):
            self.assertEqual(set(resources[kind]), {"cpu", "memory"}, kind)

    # --- Scraping -------------------------------------------------------------------------------

    def test_scrape_annotations_point_at_metrics_on_the_http_port(self):
        annotations = self.statefulset["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(int(annotations["prometheus.io/port"]), self.container_port("http"))
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")

    def test_service_monitor_scrapes_metrics_on_one_services_http_port(self):
        monitor = self.one("ServiceMonitor")["spec"]
        selected = [s for s in self.of_kind("Service")
                    if all(s["metadata"]["labels"].get(k) == v
                           for k, v in monitor["selector"]["matchLabels"].items())]
        # One Service only, or every pod would be scraped twice.
        self.assertEqual(len(selected), 1)
        self.assertNotEqual(selected[0]["spec"].get("clusterIP"), "None")
        # Its job label is the Service's name, which alerts.yml expects as job="anyai".
        self.assertEqual(selected[0]["metadata"]["name"], "anyai")
        (endpoint,) = monitor["endpoints"]
        self.assertEqual(endpoint["path"], "/metrics")
        service_ports = {p["name"]: p for p in selected[0]["spec"]["ports"]}
        self.assertEqual(self.resolve_port(service_ports[endpoint["port"]]["targetPort"]),
                         self.container_port("http"))

    # --- Cluster mode (README "Running several replicas") ----------------------------------------

    def test_three_replicas_in_cluster_mode(self):
        self.assertEqual(self.statefulset["spec"]["replicas"], 3)
        args = self.server_args()
        self.assertEqual(flag(args, "postgres_dsn"), "$(ANYAI_POSTGRES_DSN)")
        self.assertRegex(flag(args, "handoff_flush_interval"), r"^\d+(ms|s)$")
        env = {e["name"]: e for e in self.container["env"]}
        dsn = env["ANYAI_POSTGRES_DSN"]["valueFrom"]["secretKeyRef"]
        self.assertEqual((dsn["name"], dsn["key"]), ("anyai-postgres", "dsn"))
        self.assertFalse(dsn.get("optional", False))  # else $(ANYAI_POSTGRES_DSN) stays literal
        password = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
        self.assertEqual(password["name"], "anyai-postgres")
        self.assertRegex(self.config_map_config(), r"(?m)^key_cache_ttl \{")
        # The flags parse: the server accepts them (a DSN it cannot reach fails later, at start).
        self.print_config("--handoff_flush_interval=" + flag(args, "handoff_flush_interval"))

    def test_secret_example_names_the_postgres_service(self):
        secret = self.named("Secret", "anyai-postgres")
        self.assertRegex(secret["stringData"]["dsn"], r"\bhost=anyai-postgres\b")
        self.assertNotIn("password", secret["stringData"]["dsn"])
        with open(os.path.join(DEPLOY, "README.md")) as f:
            readme = f.read()
        self.assertIn("anyai-postgres", readme)

    def test_haproxy_config_map_is_the_shipped_config_with_pod_addresses(self):
        with open(os.path.join(DEPLOY, "haproxy", "anyai.cfg")) as f:
            shipped = f.read()
        k8s = self.named("ConfigMap", "anyai-haproxy")["data"]["haproxy.cfg"]

        def lines(text):
            return [re.sub(r"\s+#.*$", "", l).strip() for l in text.splitlines()
                    if l.strip() and not l.strip().startswith("#")]

        expected = []
        for line in lines(shipped):
            line = re.sub(r"^bind 127\.0\.0\.1:", "bind :", line)
            m = re.match(r"^(server anyai-(\d) )127\.0\.0\.1:(\d+)( .*)$", line)
            if m:
                port = 8080 if m.group(3).startswith("808") else 50051
                line = "%sanyai-%s.anyai-headless:%d%s" % (m.group(1), m.group(2), port,
                                                         m.group(4))
            line = re.sub(r"^default-server ",
                          "default-server resolvers kubedns init-addr last,libc,none ", line)
            expected.append(line)
        got = lines(k8s)
        start = got.index("defaults")
        self.assertEqual(got[start:], expected)
        self.assertEqual(self.statefulset["spec"]["replicas"],
                         sum(1 for l in got if l.startswith("server ") and " check" in l))
        service = self.named("Service", "anyai-proxy")
        self.assertEqual({p["name"]: p["port"] for p in service["spec"]["ports"]},
                         {"grpc": self.container_port("grpc"), "http": self.container_port("http")})

    # --- The config really works ----------------------------------------------------------------

    def test_config_map_config_starts_the_server(self):
        with tempfile.TemporaryDirectory(prefix="anyai-k8s-config-") as tmp:
            path = os.path.join(tmp, "anyai.textproto")
            with open(path, "w") as f:
                f.write(self.config_map_config())
            # Listening and data flags override the file's pod values, as on a developer box.
            with ServerProcess(deploy_testing.ARGS["server"], extra_args=["--config=" + path],
                               require_http=False) as server:
                self.assertRegex(server.grpc_address, r"^127\.0\.0\.1:\d+$")
                self.assertIsNone(server.process.poll())


if __name__ == "__main__":
    deploy_testing.run_tests(flags=("server",))
