// anyai-server: the gateway (SPEC §1, §8). Reads an optional config file, applies flags and
// the environment, starts the fronts and prints the addresses it bound on stdout, one line
// each ("grpc listening on 127.0.0.1:50051", then "http listening on 127.0.0.1:8080"), so
// that scripts and tests may use port 0.
// With --print_config it prints the effective config (defaults, file, flags and environment,
// validated) as textproto with its secrets redacted, and exits.
// SIGTERM or SIGINT shut it down gracefully: /readyz turns 503, both fronts stop accepting,
// and in-flight calls (HTTP streams included) get 5 seconds to finish.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/app/server.h"
#include "server/config/config.h"

ABSL_FLAG(std::string, config, "", "Config file (textproto or .json); empty: built-in defaults");
ABSL_FLAG(std::optional<std::string>, grpc_listen, std::nullopt,
          "gRPC HOST:PORT (default 0.0.0.0:50051; port 0 picks a free port)");
ABSL_FLAG(std::optional<std::string>, http_listen, std::nullopt,
          "HTTP HOST:PORT (default 0.0.0.0:8080; port 0 picks a free port)");
ABSL_FLAG(std::optional<std::string>, data_dir, std::nullopt,
          "RocksDB data directory (default ./data)");
ABSL_FLAG(bool, print_config, false,
          "Print the effective config (secrets redacted) as textproto and exit");

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "anyai-server: " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("The AnyAI gateway: gRPC and HTTP fronts over one quota engine.");
  absl::ParseCommandLine(argc, argv);
  namespace server = anyai::server;

  // Block the shutdown signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<anyai::v1::ServerConfig> config = server::LoadServerConfig(
      absl::GetFlag(FLAGS_config),
      server::FlagOverrides{.grpc_listen = absl::GetFlag(FLAGS_grpc_listen),
                            .http_listen = absl::GetFlag(FLAGS_http_listen),
                            .data_dir = absl::GetFlag(FLAGS_data_dir)});
  if (!config.ok()) return Fail(config.status());
  if (absl::GetFlag(FLAGS_print_config)) {
    std::cout << server::RedactedConfigText(*config);
    return 0;
  }

  absl::StatusOr<std::unique_ptr<server::Server>> running = server::Server::Start(*config);
  if (!running.ok()) return Fail(running.status());
  std::cout << "grpc listening on " << (*running)->grpc_address() << std::endl;
  std::cout << "http listening on " << (*running)->http_address() << std::endl;

  std::thread waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    std::cerr << "anyai-server: signal " << signal << ", shutting down\n";
    (*running)->Shutdown(absl::Seconds(5));
  });
  (*running)->Wait();
  waiter.join();
  return 0;
}
