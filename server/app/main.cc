// anyai-server: the gateway (SPEC §1, §8). Reads an optional config file, applies flags and
// the environment, starts the fronts and prints the addresses it bound on stdout, one line
// each ("grpc listening on 127.0.0.1:50051", then "http listening on 127.0.0.1:8080", then
// "admin listening on 127.0.0.1:50052"), so that scripts and tests may use port 0.
// With --print_config it prints the effective config (defaults, file, flags and environment,
// validated) as textproto with its secrets redacted, and exits.
// SIGTERM or SIGINT shut it down gracefully (Server::Shutdown): /readyz turns 503 at once,
// calls are still served for drain_delay, then the listeners stop, idle connections close and
// calls in flight (streams included) get shutdown_grace to finish; the exit status is 0. A
// second SIGTERM or SIGINT during that ends the process at once, with status 128 + the signal.
// --help lists the flags below (those of this file); --helpfull adds Abseil's own.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/app/server.h"
#include "server/config/config.h"

ABSL_FLAG(std::string, config, "", "Config file (textproto or .json); empty: built-in defaults");
ABSL_FLAG(std::optional<std::string>, grpc_listen, std::nullopt,
          "gRPC HOST:PORT (default 0.0.0.0:50051; port 0 picks a free port)");
ABSL_FLAG(std::optional<std::string>, http_listen, std::nullopt,
          "HTTP HOST:PORT (default 0.0.0.0:8080; port 0 picks a free port)");
ABSL_FLAG(std::optional<std::string>, data_dir, std::nullopt,
          "RocksDB data directory (default ./data)");
ABSL_FLAG(std::optional<std::string>, admin_listen, std::nullopt,
          "Admin gRPC HOST:PORT (default 127.0.0.1:50052; port 0 picks a free port)");
ABSL_FLAG(std::optional<std::string>, tls_cert_file, std::nullopt,
          "PEM certificate (chain) for TLS on the gRPC and HTTP ports (with --tls_key_file)");
ABSL_FLAG(std::optional<std::string>, tls_key_file, std::nullopt,
          "PEM private key for --tls_cert_file");
ABSL_FLAG(std::optional<std::string>, tls_client_ca_file, std::nullopt,
          "PEM CA bundle: clients must present a certificate it signs (mutual TLS)");
ABSL_FLAG(std::optional<std::string>, postgres_dsn, std::nullopt,
          "Cluster mode: libpq DSN of the shared PostgreSQL (key records, hand-off state); "
          "prefer the config file or a secret, a DSN with a password shows in `ps`");
ABSL_FLAG(std::optional<std::string>, handoff_flush_interval, std::nullopt,
          "Cluster mode: how often window counts are flushed to PostgreSQL, e.g. 1s (default 1s)");
ABSL_FLAG(bool, print_config, false,
          "Print the effective config (secrets redacted) as textproto and exit");

namespace {

// Abseil's --help shows only the flags of files named after the program (anyai-server.cc,
// anyai-server_main.cc), so without this it listed none. The filename is as the compiler saw it:
// relative or absolute, depending on the build directory and ccache.
bool IsThisFile(absl::string_view filename) {
  return absl::EndsWith(filename, "server/app/main.cc");
}

int Fail(const absl::Status& status) {
  std::cerr << "anyai-server: " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("The AnyAI gateway: gRPC and HTTP fronts over one quota engine.");
  absl::FlagsUsageConfig usage_config;  // unset callbacks keep Abseil's defaults
  usage_config.contains_helpshort_flags = IsThisFile;
  usage_config.contains_help_flags = IsThisFile;
  absl::SetFlagsUsageConfig(usage_config);
  absl::ParseCommandLine(argc, argv);
  namespace server = anyai::server;
#ifdef NDEBUG
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex acquisition would also update
  // its lock-order graph (GraphCycles: ~1.5% of a loaded gRPC server's time, issue 13). The
  // server skips it in builds with NDEBUG; the unit tests, which do not run main(), keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif

  // Block the shutdown signals in every thread; main waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<anyai::v1::ServerConfig> config = server::LoadServerConfig(
      absl::GetFlag(FLAGS_config),
      server::FlagOverrides{.grpc_listen = absl::GetFlag(FLAGS_grpc_listen),
                            .http_listen = absl::GetFlag(FLAGS_http_listen),
                            .data_dir = absl::GetFlag(FLAGS_data_dir),
                            .admin_listen = absl::GetFlag(FLAGS_admin_listen),
                            .tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                            .tls_key_file = absl::GetFlag(FLAGS_tls_key_file),
                            .tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file),
                            .postgres_dsn = absl::GetFlag(FLAGS_postgres_dsn),
                            .handoff_flush_interval = absl::GetFlag(FLAGS_handoff_flush_interval)});
  if (!config.ok()) return Fail(config.status());
  if (absl::GetFlag(FLAGS_print_config)) {
    std::cout << server::RedactedConfigText(*config);
    return 0;
  }

  absl::StatusOr<std::unique_ptr<server::Server>> running = server::Server::Start(*config);
  if (!running.ok()) return Fail(running.status());
  std::cout << "grpc listening on " << (*running)->grpc_address() << std::endl;
  std::cout << "http listening on " << (*running)->http_address() << std::endl;
  std::cout << "admin listening on " << (*running)->admin_address() << std::endl;

  int signal = 0;
  sigwait(&signals, &signal);
  std::cerr << "anyai-server: signal " << signal
            << ", shutting down (send it again to stop at once)" << std::endl;
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    (*running)->Shutdown();
    stopped.store(true, std::memory_order_release);
  });
  // Until the shutdown is done, a second signal ends the process at once.
  while (!stopped.load(std::memory_order_acquire)) {
    const timespec poll = {.tv_sec = 0, .tv_nsec = 50'000'000};
    const int again = sigtimedwait(&signals, nullptr, &poll);
    if (again > 0) {
      std::cerr << "anyai-server: signal " << again << " again, exiting now" << std::endl;
      std::_Exit(128 + again);
    }
  }
  stopper.join();
  return 0;
}
