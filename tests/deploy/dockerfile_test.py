"""deploy_dockerfile: deploy/Dockerfile stays true to the build it mirrors, without a Docker
engine (there is none on the build machines).

- the build stage is Debian 12, installs with scripts/install-deps.sh (without --tests) and runs
  exactly scripts/run.sh's configure and build commands;
- the runtime stage's packages provide every shared library that the binaries built here need:
  each library of `ldd build/bin/anyai-server` (and anyai-admin) belongs to a runtime package
  or to one of their dependencies, as this Debian 12 machine's dpkg database says;
- the image's user, volume, ports, health check, config and entrypoint agree with the server
  (its default ports in deploy/config/anyai.textproto) and with deploy/k8s;
- the health check (deploy/healthcheck.sh) follows the HTTP port the server is configured with,
  by a config file or a flag: it is run here against real servers on non-default ports.

Usage: dockerfile_test.py --server=build/bin/anyai-server --admin=build/bin/anyai-admin
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import unittest

import deploy_testing
from deploy_testing import DEPLOY, REPO, ServerProcess

HEALTHCHECK_SCRIPT = os.path.join(DEPLOY, "healthcheck.sh")


def instructions(path):
    """[(stage index, INSTRUCTION, arguments)] of a Dockerfile, continuations joined."""
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if not l.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    stage = -1
    for line in text.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append((stage, keyword, " ".join(rest.split())))
    return out


def run_sh_build_commands():
    """The cmake commands of scripts/run.sh, without output redirections."""
    with open(os.path.join(REPO, "scripts", "run.sh")) as f:
        return [" ".join(re.sub(r"\s*>\s*/dev/null", "", l).split())
                for l in f.read().splitlines() if l.startswith("cmake ")]


def dpkg_owners(paths):
    """{path: the Debian package that installed it}, in one dpkg query (usrmerge: /lib and
    /usr/lib are one, so each path is also asked as the other)."""
    candidates = {}
    for path in paths:
        real = os.path.realpath(path)
        for p in (path, real):
            candidates.setdefault(p, path)
            if p.startswith("/usr/lib/"):
                candidates.setdefault(p[len("/usr"):], path)
            elif p.startswith("/lib/"):
                candidates.setdefault("/usr" + p, path)
    result = subprocess.run(["dpkg-query", "-S", *candidates], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    owners = {}
    for line in result.stdout.splitlines():
        packages, _, file = line.partition(": ")
        if file in candidates:
            owners[candidates[file]] = packages.split(",")[0].split(":")[0].strip()
    return owners


def installed_dependencies(package):
    """Names of the packages `package` depends on (every alternative), or None if it is not
    installed here."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\n${Depends}, ${Pre-Depends}", package],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if result.returncode != 0 or "install ok installed" not in result.stdout.split("\n")[0]:
        return None
    deps = result.stdout.split("\n", 1)[1]
    return {re.split(r"[\s(:]", alt.strip())[0] for alt in re.split(r"[,|]", deps)
            if alt.strip()}


class DockerfileTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.steps = instructions(os.path.join(DEPLOY, "Dockerfile"))
        cls.stages = max(s for s, _, _ in cls.steps) + 1

    def stage(self, index, keyword=None):
        return [(k, a) for s, k, a in self.steps
                if s == index and (keyword is None or k == keyword)]

    def runtime(self, keyword):
        return [a for k, a in self.stage(self.stages - 1, keyword)]

    def runtime_packages(self):
        packages = set()
        for run in self.runtime("RUN"):
            for m in re.finditer(r"apt-get install ((?:\S+ ?)+?)(?:&&|$)", run):
                packages |= {w for w in m.group(1).split() if not w.startswith("-")}
        return packages

    def test_two_stages_on_debian_12(self):
        self.assertEqual(self.stages, 2)
        for stage in range(self.stages):
            (base,) = [a for k, a in self.stage(stage, "FROM")]
            self.assertRegex(base, r"^debian:(12|bookworm)(-slim)?\b")

    def test_build_stage_installs_with_install_deps_without_tests(self):
        runs = [a for k, a in self.stage(0, "RUN")]
        installs = [r for r in runs if "scripts/install-deps.sh" in r]
        self.assertEqual(len(installs), 1)
        self.assertNotIn("--tests", installs[0])
        copies = [a for k, a in self.stage(0, "COPY")]
        self.assertIn("scripts/install-deps.sh scripts/install-deps.sh", copies)

    def test_build_stage_runs_the_configure_and_build_of_run_sh(self):
        commands = []
        for k, run in self.stage(0, "RUN"):
            commands += [c.strip() for c in run.split("&&") if c.strip().startswith("cmake ")]
        expected = run_sh_build_commands()
        self.assertEqual(len(expected), 2, "scripts/run.sh changed shape: %s" % expected)
        self.assertEqual(commands, expected)

    def test_runtime_copies_the_binaries_that_build_makes(self):
        copies = self.runtime("COPY")
        binaries = [c for c in copies if c.startswith("--from=build")]
        self.assertEqual(len(binaries), 1)
        sources = binaries[0].split()[1:-1]
        self.assertEqual(sources, ["/src/build/bin/anyai-server", "/src/build/bin/anyai-admin"])
        self.assertEqual(binaries[0].split()[-1], "/usr/local/bin/")

    def test_runtime_packages_are_installed_debian_12_packages(self):
        packages = self.runtime_packages()
        self.assertTrue(packages)
        for package in sorted(packages):
            with self.subTest(package=package):
                self.assertIsNotNone(installed_dependencies(package),
                                     "%s is not a package installed on this Debian 12 "
                                     "machine" % package)
        self.assertFalse([p for p in packages if p.endswith("-dev")], "no -dev at runtime")

    def test_runtime_packages_provide_every_shared_library_of_the_binaries(self):
        closure = set()
        todo = list(self.runtime_packages())
        while todo:
            package = todo.pop()
            if package in closure:
                continue
            closure.add(package)
            todo += sorted(installed_dependencies(package) or ())
        libraries = set()
        for binary in (deploy_testing.ARGS["server"], deploy_testing.ARGS["admin"]):
            ldd = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, text=True, check=True)
            libraries |= set(re.findall(r"^\s*\S+ => (/\S+)", ldd.stdout, re.M))
        # The sanitizer builds (build-asan/) link their runtimes; the image is a Release build.
        libraries = {l for l in libraries
                     if not re.search(r"/lib(asan|ubsan|tsan|lsan)\.so", l)}
        self.assertGreater(len(libraries), 10)
        owners = dpkg_owners(libraries)
        self.assertEqual(libraries - set(owners), set(), "libraries no Debian package owns")
        missing = {lib: owner for lib, owner in owners.items() if owner not in closure}
        self.assertEqual(missing, {}, "libraries whose package the runtime stage lacks")

    def test_runs_as_a_non_root_user_with_the_data_volume(self):
        (user,) = self.runtime("USER")
        self.assertRegex(user, r"^[1-9]\d*:[1-9]\d*$")
        (volume,) = self.runtime("VOLUME")
        entrypoint = json.loads(self.runtime("ENTRYPOINT")[0])
        self.assertIn("--data_dir=" + volume, entrypoint)
        self.assertTrue(any("chown" in r and volume in r for r in self.runtime("RUN")))

    def test_exposes_the_default_ports_and_checks_healthz(self):
        with open(os.path.join(DEPLOY, "config", "anyai.textproto")) as f:
            defaults = f.read()
        ports = [re.search(r'(?m)^%s:\s*"[^"]*:(\d+)"' % field, defaults).group(1)
                 for field in ("grpc_listen", "http_listen")]
        (expose,) = self.runtime("EXPOSE")
        self.assertEqual(expose.split(), ports)
        # The Admin listener stays on loopback in the container, and is not exposed.
        admin = re.search(r'(?m)^admin_listen:\s*"([^"]*):(\d+)"', defaults)
        self.assertEqual(admin.group(1), "127.0.0.1")
        self.assertNotIn(admin.group(2), expose.split())
        (healthcheck,) = self.runtime("HEALTHCHECK")
        # Not a fixed port: the script asks the server's effective config (tested below).
        self.assertNotRegex(healthcheck, r"127\.0\.0\.1:\d+")
        command = json.loads(healthcheck.split("CMD", 1)[1])
        self.assertEqual(command[0], "/bin/sh")
        self.assertIn("deploy/healthcheck.sh " + command[1], self.runtime("COPY"))
        with open(HEALTHCHECK_SCRIPT) as f:
            self.assertIn("/healthz", f.read())
        self.assertIn("curl", self.runtime_packages())

    def healthcheck(self, pid):
        """Runs deploy/healthcheck.sh for the server of `pid`, as the HEALTHCHECK does."""
        env = dict(os.environ, ANYAI_SERVER_PID=str(pid))
        return subprocess.run(["/bin/sh", HEALTHCHECK_SCRIPT], env=env, capture_output=True,
                              text=True, timeout=30)

    def test_healthcheck_follows_the_http_port_of_the_config_file(self):
        port = deploy_testing.free_port()
        with tempfile.TemporaryDirectory(prefix="anyai-healthcheck-") as tmp:
            config = os.path.join(tmp, "anyai.textproto")
            with open(config, "w") as f:
                f.write('grpc_listen: "127.0.0.1:0"\nhttp_listen: "0.0.0.0:%d"\n' % port)
            with ServerProcess(deploy_testing.ARGS["server"], extra_args=["--config=" + config],
                               listen_flags=False) as server:
                self.assertEqual(server.http_address, "0.0.0.0:%d" % port)
                result = self.healthcheck(server.process.pid)
                self.assertEqual(result.returncode, 0, result.stderr)

    def test_healthcheck_follows_an_http_listen_flag(self):
        port = deploy_testing.free_port()
        with ServerProcess(deploy_testing.ARGS["server"],
                           extra_args=["--http_listen=127.0.0.1:%d" % port]) as server:
            self.assertEqual(server.http_address, "127.0.0.1:%d" % port)
            pid = server.process.pid
            result = self.healthcheck(pid)
            self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotEqual(self.healthcheck(pid).returncode, 0, "no server: unhealthy")

    def test_healthcheck_fails_when_nothing_answers_on_the_configured_port(self):
        # A server that is up but not serving HTTP where its config says: a stopped process.
        port = deploy_testing.free_port()
        with ServerProcess(deploy_testing.ARGS["server"],
                           extra_args=["--http_listen=127.0.0.1:%d" % port]) as server:
            server.process.send_signal(signal.SIGSTOP)
            try:
                result = self.healthcheck(server.process.pid)
            finally:
                server.process.send_signal(signal.SIGCONT)
            self.assertNotEqual(result.returncode, 0, result.stdout)

    def test_entrypoint_runs_the_server_with_the_copied_config(self):
        entrypoint = json.loads(self.runtime("ENTRYPOINT")[0])
        self.assertEqual(entrypoint[0], "/usr/local/bin/anyai-server")
        config = [a.split("=", 1)[1] for a in entrypoint if a.startswith("--config=")]
        self.assertEqual(len(config), 1)
        self.assertIn("deploy/config/anyai.textproto " + config[0], self.runtime("COPY"))

    def test_dockerignore_keeps_build_trees_and_git_out(self):
        with open(os.path.join(REPO, ".dockerignore")) as f:
            patterns = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        for pattern in (".git", "/build*", "**/node_modules"):
            self.assertIn(pattern, patterns)


if __name__ == "__main__":
    deploy_testing.run_tests(flags=("server", "admin"))
