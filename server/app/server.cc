#include "server/app/server.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security_constants.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "quota/engine.h"
#include "server/config/config.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/log_limit.h"
#include "server/gateway/proto_time.h"
#include "server/gateway/validation.h"
#include "server/grpc/admin_service.h"
#include "server/grpc/anyai_service.h"
#include "server/grpc/grpc_acceptor.h"
#include "server/grpc/grpc_calls_in_flight.h"
#include "server/grpc/grpc_metrics.h"
#include "server/http/http_api.h"
#include "server/http/http_router.h"
#include "server/http/http_server.h"
#include "server/metrics/metered_provider.h"
#include "server/metrics/metrics.h"
#include "server/net/host_port.h"
#include "server/providers/provider_registry.h"
#include "storage/caching_key_store.h"
#include "storage/database.h"
#include "storage/handoff_usage.h"
#include "storage/postgres_connection.h"
#include "storage/postgres_key_store.h"
#include "storage/rocksdb_key_store.h"
#include "storage/usage_schema.h"
#include "storage/usage_store.h"

namespace anyai::server {
namespace {

// A limit from the config: its value, or `fallback` (its DefaultConfig() value) when unset (0).
int64_t Pick(int64_t value, int64_t fallback) { return value > 0 ? value : fallback; }
absl::Duration DurationOr(const google::protobuf::Duration& d,
                          const google::protobuf::Duration& fallback) {
  return FromProto(d) > absl::ZeroDuration() ? FromProto(d) : FromProto(fallback);
}

// The HTTP front's settings; a zero (unset) field means its DefaultConfig() value.
HttpServerOptions HttpOptionsOf(const v1::ServerConfig& config, const ServerOptions& options) {
  const v1::ServerConfig defaults = DefaultConfig();
  HttpServerOptions out;
  out.listen = config.http_listen().empty() ? defaults.http_listen() : config.http_listen();
  out.max_body_bytes = Pick(config.max_body_bytes(), defaults.max_body_bytes());
  out.max_header_bytes = Pick(config.max_header_bytes(), defaults.max_header_bytes());
  out.idle_timeout = DurationOr(config.http_idle_timeout(), defaults.http_idle_timeout());
  out.read_timeout = DurationOr(config.http_read_timeout(), defaults.http_read_timeout());
  // A client gets as long to take an answer's bytes as to send its request.
  out.write_timeout = out.read_timeout;
  out.io_threads = options.http_io_threads;
  out.worker_threads = options.http_worker_threads;
  out.first_byte_timeout = DurationOr(config.first_byte_timeout(), defaults.first_byte_timeout());
  out.header_timeout = DurationOr(config.header_timeout(), defaults.header_timeout());
  out.max_connections = Pick(config.max_connections(), defaults.max_connections());
  out.max_connections_per_address =
      Pick(config.max_connections_per_address(), defaults.max_connections_per_address());
  out.ipv6_prefix_length = static_cast<int>(
      Pick(config.anonymous_ipv6_prefix_length(), defaults.anonymous_ipv6_prefix_length()));
  // A trusted proxy's one address carries many clients: the per-address cap is not for it.
  // (The config was validated, so the list parses.)
  if (absl::StatusOr<TrustedProxies> proxies = TrustedProxies::Create(config.trusted_proxies());
      proxies.ok() && !config.trusted_proxies().empty()) {
    out.uncapped_peer = [proxies = *std::move(proxies)](std::string_view peer) {
      return proxies.Contains(peer);
    };
  }
  out.tls_cert_file = config.tls().cert_file();
  out.tls_key_file = config.tls().key_file();
  out.tls_client_ca_file = config.tls().client_ca_file();
  return out;
}

// The connection caps of a gRPC listener (its config field `field`): the same as the HTTP
// front's, each front counting its own connections.
GrpcAcceptorOptions GrpcCapsOf(const v1::ServerConfig& config, const ServerOptions& options,
                               absl::string_view field) {
  const HttpServerOptions http = HttpOptionsOf(config, options);
  return GrpcAcceptorOptions{
      .max_connections = http.max_connections,
      .max_connections_per_address = http.max_connections_per_address,
      .ipv6_prefix_length = http.ipv6_prefix_length,
      .uncapped_peer = http.uncapped_peer,
      .backlog = 1024,
      .field = std::string(field),
  };
}

// A PEM file is a few KB; anything much larger is not one.
constexpr size_t kMaxPemBytes = size_t{1} << 20;

// The contents of the PEM file `path`, named by the config field `field`.
absl::StatusOr<std::string> ReadPem(absl::string_view field, const std::string& path) {
  const auto failed = [&](absl::string_view why) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ": cannot read \"", path, "\": ", why));
  };
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return failed(std::strerror(errno));
  std::string pem;
  char buffer[8192];
  size_t n = 0;
  while (pem.size() <= kMaxPemBytes && (n = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
    pem.append(buffer, n);
  }
  const int error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (error != 0) return failed(std::strerror(error));
  if (pem.size() > kMaxPemBytes) return failed("larger than 1 MiB, not a PEM file");
  if (pem.find("-----BEGIN ") == std::string::npos) return failed("not PEM (no -----BEGIN line)");
  return pem;
}

// The credentials of a listener whose TLS is `tls` (the config field `field`): plaintext when
// it names no certificate; with a client_ca_file, clients must present a certificate that one
// of its CAs signed (mutual TLS).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> CredentialsOf(absl::string_view field,
                                                                       const v1::TlsConfig& tls) {
  if (tls.cert_file().empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      tls.client_ca_file().empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                   : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  absl::StatusOr<std::string> cert = ReadPem(absl::StrCat(field, ".cert_file"), tls.cert_file());
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem(absl::StrCat(field, ".key_file"), tls.key_file());
  if (!key.ok()) return key.status();
  options.pem_key_cert_pairs.push_back(
      {.private_key = *std::move(key), .cert_chain = *std::move(cert)});
  if (!tls.client_ca_file().empty()) {
    absl::StatusOr<std::string> ca =
        ReadPem(absl::StrCat(field, ".client_ca_file"), tls.client_ca_file());
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *std::move(ca);
  }
  return grpc::SslServerCredentials(options);
}

// The metadata a gRPC call may carry, in bytes (max_header_bytes, as the HTTP front's headers).
int64_t MetadataLimit(const v1::ServerConfig& config) {
  return config.max_header_bytes() > 0 ? config.max_header_bytes()
                                       : DefaultConfig().max_header_bytes();
}

// gRPC's own limit (see BoundGrpc): four times MetadataLimit, at least 64 KiB.
int64_t HardMetadataLimit(const v1::ServerConfig& config) {
  return std::min<int64_t>(std::max<int64_t>(4 * MetadataLimit(config), int64_t{64} << 10),
                           INT32_MAX);
}

int ToMillis(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

// The bounds of both gRPC listeners (SPEC §10, issue 12): memory, streams per connection,
// metadata size, handshake time, idle connections and ping floods. An unset (zero) field means
// its DefaultConfig() value.
void BoundGrpc(const v1::ServerConfig& config, grpc::ServerBuilder& builder) {
  const v1::ServerConfig defaults = DefaultConfig();
  // Past the quota gRPC refuses new streams and slows reads instead of growing the process.
  grpc::ResourceQuota quota("anyai-grpc");
  quota.Resize(static_cast<size_t>(
      Pick(config.grpc_memory_limit_bytes(), defaults.grpc_memory_limit_bytes())));
  builder.SetResourceQuota(quota);
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONCURRENT_STREAMS,
      static_cast<int>(Pick(config.max_concurrent_streams(), defaults.max_concurrent_streams())));
  // gRPC 1.51 has one metadata limit (no GRPC_ARG_ABSOLUTE_MAX_METADATA_SIZE), and a header
  // block over it is left half decoded: the HPACK table it shares with the client goes out of
  // step and the connection's next call fails to decode, closing the whole connection. So
  // gRPC's own limit is a hard ceiling well above max_header_bytes, and the AnyAI service
  // refuses a call over max_header_bytes itself (RESOURCE_EXHAUSTED, that call alone).
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE,
                             static_cast<int>(HardMetadataLimit(config)));
  // And the HPACK decoder keeps no dynamic table (SETTINGS_HEADER_TABLE_SIZE 0) once the
  // client has the server's settings, so that even a block over the ceiling cannot put later
  // calls out of step; requests' headers are then sent unindexed (a few hundred bytes a call).
  // Not in cluster mode (postgres_dsn), where the replicas sit behind HAProxy: HAProxy 2.6 never
  // sends the dynamic table size update that gRPC 1.51 then demands at the start of a header
  // block, so every call through it failed ("Failed parsing HTTP/2"); and HAProxy's own header
  // limit (tune.bufsize, 16 KiB) keeps blocks far below the ceiling above.
  if (config.postgres_dsn().empty()) {
    builder.AddChannelArgument(GRPC_ARG_HTTP2_HPACK_TABLE_SIZE_DECODER, 0);
  }
  // One read takes at most 64 KiB off a connection: gRPC parses a whole read before it frees
  // the streams reset in it, so a read of megabytes of HEADERS + RST_STREAM pairs (after the
  // connection's writes stalled, the kernel had buffered them) briefly held ~70k streams.
  builder.AddChannelArgument(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, 64 << 10);
  builder.AddChannelArgument(
      GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
      ToMillis(DurationOr(config.header_timeout(), defaults.header_timeout())));
  // A connection with no call for as long as an idle HTTP connection is held gets a GOAWAY; a
  // client reconnects when it next calls.
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_IDLE_MS,
      ToMillis(DurationOr(config.http_idle_timeout(), defaults.http_idle_timeout())));
  // Dead peers are found by the server's own pings; a client may ping at most every 10 s while
  // it has calls (none without), and is sent away after two pings too many.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
}

}  // namespace

struct Server::Parts {
  ServerOptions options;
  std::unique_ptr<storage::Database> database;
  // Cluster mode (postgres_dsn): the connections to the shared PostgreSQL; else null.
  std::unique_ptr<storage::PostgresPool> postgres;
  // The key records: a RocksDbKeyStore (single node) or a PostgresKeyStore (cluster mode);
  // rocksdb_keys is the former, for its write statistics, or null.
  std::unique_ptr<storage::KeyStore> keys;
  storage::RocksDbKeyStore* rocksdb_keys = nullptr;
  // `keys` as the Gateway sees them: Lookup answered from memory (key_cache_ttl).
  std::unique_ptr<storage::CachingKeyStore> cached_keys;
  std::unique_ptr<storage::UsageStore> usage;
  // Cluster mode: `usage` wrapped to share window counts through PostgreSQL; else null.
  std::unique_ptr<storage::HandoffUsage> handoff;
  // What the engine writes to and loads from: `handoff` if set, else `usage`.
  quota::UsageSink* usage_sink = nullptr;
  quota::UsageLoader* usage_loader = nullptr;
  std::unique_ptr<quota::Engine> engine;
  std::unique_ptr<Catalogue> catalogue;
  ProviderRegistry providers;
  std::unique_ptr<Metrics> metrics;
  // The providers as the Gateway sees them: each wrapped to count its calls.
  std::vector<std::unique_ptr<MeteredProvider>> metered;
  // Generated images for their URLs (response_format "url"); in memory.
  std::unique_ptr<ImageStore> images;
  std::unique_ptr<Gateway> gateway;
  std::unique_ptr<AnyAIService> anyai_service;
  std::unique_ptr<AdminService> admin_service;
  // The gRPC calls in flight on both gRPC servers, which shutdown waits for; declared before
  // the servers, whose calls it counts, so that it outlives them.
  GrpcCallsInFlight grpc_calls;
  std::unique_ptr<grpc::Server> grpc;
  // Its listener, with the connection caps; declared after the server, so that it stops first.
  std::unique_ptr<GrpcAcceptor> grpc_acceptor;
  std::string grpc_address;
  int grpc_port = 0;
  // The Admin service's own server (admin_listen).
  std::unique_ptr<grpc::Server> admin;
  std::unique_ptr<GrpcAcceptor> admin_acceptor;
  std::string admin_address;
  int admin_port = 0;
  // Shutdown() with no arguments: the config's drain_delay and shutdown_grace.
  absl::Duration drain_delay;
  absl::Duration shutdown_grace;
  // The HTTP front: its routes (the API's, and any other route added before the server
  // starts, such as /metrics) and the server that serves them. Declared after the Gateway
  // they use, so they are destroyed before it (Shutdown() has stopped them by then).
  std::unique_ptr<HttpApi> http_api;
  std::unique_ptr<HttpRouter> http_router;
  std::unique_ptr<HttpServer> http;
  // /readyz: true from the end of Start() until Shutdown() begins.
  std::atomic<bool> ready{false};
  // Whether calls are welcome (/readyz, gRPC health): ready, and storage not failing, so that
  // a load balancer stops sending while it fails.
  bool Serving() const { return ready.load(std::memory_order_acquire) && database->healthy(); }

  absl::Mutex mu;  // waiters Await() the flags below
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  std::thread evictor;
};

Server::Server(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Server::~Server() {
  Shutdown(absl::ZeroDuration(), absl::ZeroDuration());
  Wait();  // when another thread's Shutdown() is still under way
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const v1::ServerConfig& config,
                                                      ServerOptions options) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;
  auto p = std::make_unique<Parts>();
  p->options = std::move(options);
  const v1::ServerConfig defaults = DefaultConfig();
  p->drain_delay = FromProto(config.drain_delay());
  p->shutdown_grace =
      FromProto(config.has_shutdown_grace() ? config.shutdown_grace() : defaults.shutdown_grace());
  absl::StatusOr<quota::PlanTable> plans = PlanTableFromConfig(config);
  if (!plans.ok()) return plans.status();
  if (absl::Status s = OpenStorage(config, *plans, *p); !s.ok()) return s;
  quota::EngineOptions engine_options{
      .sink = p->usage_sink,
      .loader = p->usage_loader,
      // 0 (unset): the default cap, as every other limit.
      .max_resident_tenants = config.max_resident_tenants() > 0 ? config.max_resident_tenants()
                                                                : defaults.max_resident_tenants()};
  if (config.has_idle_tenant_timeout()) {
    engine_options.idle_timeout = FromProto(config.idle_tenant_timeout());
  }
  absl::StatusOr<std::unique_ptr<quota::Engine>> engine =
      quota::Engine::Create(*std::move(plans), engine_options);
  if (!engine.ok()) return engine.status();
  p->engine = *std::move(engine);
  if (absl::Status s = BuildGateway(config, *p); !s.ok()) return s;
  // HTTP first: the gRPC front's image URLs name the HTTP port.
  if (absl::Status s = StartHttp(config, *p); !s.ok()) return s;
  absl::Status started = StartGrpc(config, *p);
  if (started.ok()) started = StartAdmin(config, *p);
  if (!started.ok()) {
    for (GrpcAcceptor* acceptor : {p->grpc_acceptor.get(), p->admin_acceptor.get()}) {
      if (acceptor != nullptr) acceptor->Stop();
    }
    for (grpc::Server* server : {p->grpc.get(), p->admin.get()}) {
      if (server != nullptr) server->Shutdown(std::chrono::system_clock::now());
    }
    // Their calls are gone once the servers are: none may touch them (or re-arm) after.
    if (p->admin != nullptr) p->admin_service->Stop();
    if (p->grpc != nullptr) p->anyai_service->Stop();
    p->http->BeginShutdown();
    p->http->Shutdown(absl::Now());
    return started;
  }
  StartEvictor(*p);
  p->ready.store(true, std::memory_order_release);
  return std::unique_ptr<Server>(new Server(std::move(p)));
}

absl::Status Server::OpenStorage(const v1::ServerConfig& config, const quota::PlanTable& plans,
                                 Parts& p) {
  absl::StatusOr<std::unique_ptr<storage::Database>> db =
      storage::Database::Open({.data_dir = config.data_dir(),
                               .durability = config.durability() == v1::DURABILITY_FSYNC
                                                 ? storage::Durability::kFsync
                                                 : storage::Durability::kProcessCrash});
  if (!db.ok()) return db.status();
  p.database = *std::move(db);
  const v1::ServerConfig defaults = DefaultConfig();
  if (config.postgres_dsn().empty()) {
    absl::StatusOr<std::unique_ptr<storage::RocksDbKeyStore>> keys =
        storage::RocksDbKeyStore::Open(*p.database);
    if (!keys.ok()) return keys.status();
    p.rocksdb_keys = keys->get();
    p.keys = *std::move(keys);
  } else {
    // Cluster mode (SPEC §9). PostgreSQL being down does not stop the start: calls that need it
    // (an uncached key, a tenant's first use) fail UNAVAILABLE under the storage-failure policy,
    // and the pool reconnects once it is back (storage/postgres_key_store.h).
    absl::StatusOr<std::unique_ptr<storage::PostgresPool>> pool =
        storage::PostgresPool::Create({.dsn = config.postgres_dsn(),
                                       .max_connections = 8,
                                       .acquire_timeout = absl::Seconds(5),
                                       .connect_timeout = absl::Seconds(5),
                                       .statement_timeout = absl::Seconds(10),
                                       .what = "key registry"});
    if (!pool.ok()) return pool.status();
    p.postgres = *std::move(pool);
    absl::StatusOr<std::unique_ptr<storage::PostgresKeyStore>> keys =
        storage::PostgresKeyStore::Open(*p.postgres);
    if (!keys.ok()) return keys.status();
    p.keys = *std::move(keys);
  }
  absl::StatusOr<std::unique_ptr<storage::CachingKeyStore>> cached =
      storage::CachingKeyStore::Create(
          *p.keys,
          {.max_staleness = FromProto(config.has_key_cache_ttl() ? config.key_cache_ttl()
                                                                 : defaults.key_cache_ttl()),
           .capacity = Pick(config.key_cache_capacity(), defaults.key_cache_capacity()),
           .negative_capacity = 0,
           .clock = p.options.clock});
  if (!cached.ok()) return cached.status();
  p.cached_keys = *std::move(cached);
  // The usage store must exist before the engine that writes to it, and describes the
  // engine's classes: a sink-less engine on the same plans gives their layout.
  if (config.durability() == v1::DURABILITY_MEMORY) return absl::OkStatus();  // no usage store
  absl::StatusOr<std::unique_ptr<quota::Engine>> layout = quota::Engine::Create(plans, {});
  if (!layout.ok()) return layout.status();
  absl::StatusOr<std::unique_ptr<storage::UsageStore>> usage = storage::UsageStore::Open(
      *p.database, storage::UsageClassesOf(**layout), {.clock = p.options.clock});
  if (!usage.ok()) return usage.status();
  p.usage = *std::move(usage);
  p.usage_sink = p.usage.get();
  p.usage_loader = p.usage.get();
  if (p.postgres != nullptr) {
    absl::StatusOr<std::unique_ptr<storage::HandoffUsage>> handoff = storage::HandoffUsage::Create(
        *p.usage, *p.postgres,
        {.flush_interval =
             FromProto(config.has_handoff_flush_interval() ? config.handoff_flush_interval()
                                                           : defaults.handoff_flush_interval()),
         .prune_interval = absl::Minutes(1),
         .max_pending_rows = 1'000'000,
         .clock = p.options.clock,
         .start_writer = true});
    if (!handoff.ok()) return handoff.status();
    p.handoff = *std::move(handoff);
    p.usage_sink = p.handoff.get();
    p.usage_loader = p.handoff.get();
  }
  return absl::OkStatus();
}

absl::Status Server::BuildGateway(const v1::ServerConfig& config, Parts& p) {
  // Before any front parses a request: protobuf logs every invalid-UTF-8 message it parses.
  InstallProtobufLogLimit();
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(config);
  if (!catalogue.ok()) return catalogue.status();
  p.catalogue = std::make_unique<Catalogue>(*std::move(catalogue));
  absl::StatusOr<ProviderRegistry> providers = MakeProviders(config, p.options.clock);
  if (!providers.ok()) return providers.status();
  p.providers = *std::move(providers);

  MetricsSources sources;
  if (p.usage != nullptr) {
    sources.storage.push_back({"usage", [usage = p.usage.get()] { return usage->write_stats(); }});
  }
  if (p.rocksdb_keys != nullptr) {
    sources.storage.emplace_back("keys", [keys = p.rocksdb_keys] { return keys->write_stats(); });
  }
  if (p.handoff != nullptr) {
    // Each flush of window counts to PostgreSQL as one write of store="handoff".
    sources.storage.emplace_back("handoff", [handoff = p.handoff.get()] {
      const storage::HandoffStats h = handoff->stats();
      return storage::WriteStats{.writes = static_cast<uint64_t>(h.flushes + h.flush_failures),
                                 .write_errors = static_cast<uint64_t>(h.flush_failures),
                                 .calls = static_cast<uint64_t>(h.flushes + h.flush_failures),
                                 .in_flight = 0,
                                 .total_latency = h.total_flush_latency,
                                 .last_latency = h.last_flush_latency};
    });
  }
  for (const auto& [name, provider] : p.providers.ByName()) sources.providers.push_back(name);
  p.metrics = Metrics::Create(*p.engine, std::move(sources));
  absl::flat_hash_map<std::string, Provider*> metered;
  for (const auto& [name, provider] : p.providers.ByName()) {
    p.metered.push_back(std::make_unique<MeteredProvider>(name, *provider, *p.metrics));
    metered[name] = p.metered.back().get();
  }
  // An unset (zero) field means its DefaultConfig() value.
  const v1::ServerConfig defaults = DefaultConfig();
  p.images = std::make_unique<ImageStore>(ImageStore::Options{
      .ttl =
          FromProto(config.has_image_url_ttl() ? config.image_url_ttl() : defaults.image_url_ttl()),
      .max_bytes = config.image_store_max_bytes() > 0 ? config.image_store_max_bytes()
                                                      : defaults.image_store_max_bytes(),
      .clock = p.options.clock});
  absl::StatusOr<TrustedProxies> proxies =
      TrustedProxies::Create({config.trusted_proxies().begin(), config.trusted_proxies().end()});
  if (!proxies.ok()) return proxies.status();

  absl::StatusOr<std::unique_ptr<Gateway>> gateway = Gateway::Create(GatewayParts{
      .engine = p.engine.get(),
      .keys = p.cached_keys.get(),
      .catalogue = p.catalogue.get(),
      .image_models =
          EndpointModelsFromConfig(config.image_generation(), DefaultImageGenerationModels()),
      .imagine_models = EndpointModelsFromConfig(config.imagine(), DefaultImagineModels()),
      .vision_models = EndpointModelsFromConfig(config.vision(), DefaultVisionModels()),
      .providers = std::move(metered),
      .image_provider = EndpointProvider(config.image_generation()),
      .imagine_provider = EndpointProvider(config.imagine()),
      .ask_provider = EndpointProvider(config.ask()),
      .vision_provider = EndpointProvider(config.vision()),
      .anonymous_plan = AnonymousPlan(config),
      .admin_token = config.admin_token(),
      .storage_failure_policy =
          config.storage_failure_policy() == v1::STORAGE_FAILURE_POLICY_FAIL_OPEN
              ? StorageFailurePolicy::kFailOpen
              : StorageFailurePolicy::kFailClosed,
      .charge_upstream_failures = config.charge_upstream_failures(),
      .max_messages = config.max_messages() > 0 ? config.max_messages() : kDefaultMaxMessages,
      .trusted_proxies = *std::move(proxies),
      .anonymous_ipv6_prefix_length = config.anonymous_ipv6_prefix_length() > 0
                                          ? config.anonymous_ipv6_prefix_length()
                                          : defaults.anonymous_ipv6_prefix_length(),
      .max_failed_auth_per_minute = config.max_failed_auth_per_minute() > 0
                                        ? config.max_failed_auth_per_minute()
                                        : defaults.max_failed_auth_per_minute(),
      .admissions_wait_for_disk = config.durability() == v1::DURABILITY_FSYNC,
      .clock = p.options.clock,
      .observer = p.metrics.get(),
      .images = p.images.get(),
  });
  if (!gateway.ok()) return gateway.status();
  p.gateway = *std::move(gateway);
  return absl::OkStatus();
}

absl::Status Server::StartGrpc(const v1::ServerConfig& config, Parts& p) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  p.anyai_service = std::make_unique<AnyAIService>(
      *p.gateway, AnyAIService::Options{
                      .public_base_url = config.public_base_url(),
                      .http_port = p.http->port(),
                      .max_metadata_bytes = MetadataLimit(config),
                      .queues = {.queues = std::min(cores, 8),
                                 .calls_waiting = 64,
                                 .worker_threads = p.options.grpc_worker_threads},
                      .serving = [raw = &p] { return raw->Serving(); },
                  });
  absl::Status s = ListenGrpc(
      "grpc_listen", config.grpc_listen(), "tls", config.tls(), config,
      [&](grpc::ServerBuilder& b) { p.anyai_service->AddTo(b); }, p, p.grpc, p.grpc_acceptor,
      p.grpc_address);
  if (s.ok()) p.anyai_service->Start();
  return s;
}

absl::Status Server::StartAdmin(const v1::ServerConfig& config, Parts& p) {
  p.admin_service = std::make_unique<AdminService>(*p.gateway);
  const std::string listen =
      config.admin_listen().empty() ? DefaultConfig().admin_listen() : config.admin_listen();
  absl::Status s = ListenGrpc(
      "admin_listen", listen, "admin_tls", config.admin_tls(), config,
      [&](grpc::ServerBuilder& b) { p.admin_service->AddTo(b); }, p, p.admin, p.admin_acceptor,
      p.admin_address);
  if (s.ok()) p.admin_service->Start();
  return s;
}

absl::Status Server::ListenGrpc(absl::string_view field, const std::string& listen,
                                absl::string_view tls_field, const v1::TlsConfig& tls,
                                const v1::ServerConfig& config,
                                absl::FunctionRef<void(grpc::ServerBuilder&)> add_services,
                                Parts& p, std::unique_ptr<grpc::Server>& server,
                                std::unique_ptr<GrpcAcceptor>& acceptor, std::string& address) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      CredentialsOf(tls_field, tls);
  if (!credentials.ok()) return credentials.status();
  absl::StatusOr<std::unique_ptr<GrpcAcceptor>> listening =
      GrpcAcceptor::Listen(listen, GrpcCapsOf(config, p.options, field));
  if (!listening.ok()) return listening.status();
  acceptor = *std::move(listening);
  grpc::ServerBuilder builder;
  acceptor->Attach(builder.experimental().AddExternalConnectionAcceptor(
      grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD, *credentials));
  add_services(builder);
  BoundGrpc(config, builder);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(p.grpc_calls.Interceptor());
  interceptors.push_back(MakeGrpcMetricsInterceptor(
      [metrics = p.metrics.get()](Endpoint endpoint, int status, absl::Duration latency) {
        metrics->ObserveRequest(endpoint, Transport::kGrpc, status, latency);
      }));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server = builder.BuildAndStart();
  if (server == nullptr) {
    // The listener is bound already, so what gRPC refused is its credentials.
    return absl::UnavailableError(
        absl::StrCat(field, ": cannot serve on \"", listen, "\"",
                     tls.cert_file().empty()
                         ? ""
                         : absl::StrCat(" (", tls_field, ".cert_file and ", tls_field,
                                        ".key_file are not a certificate and its private key)")));
  }
  if (absl::Status s = acceptor->Start(); !s.ok()) return s;
  // The config was validated: the address is HOST:PORT.
  absl::StatusOr<net::HostPort> at = net::HostPort::Parse(listen);
  if (!at.ok()) return at.status();
  address = net::HostPort{at->host, acceptor->port()}.ToString();
  return absl::OkStatus();
}

absl::Status Server::StartHttp(const v1::ServerConfig& config, Parts& p) {
  Parts* raw = &p;
  p.http_router = std::make_unique<HttpRouter>();
  p.http_api = std::make_unique<HttpApi>(
      *p.gateway, [raw] { return raw->Serving(); }, config.public_base_url());
  if (absl::Status s = p.http_api->AddRoutes(*p.http_router); !s.ok()) return s;
  absl::Status s = p.http_router->Add(
      "GET", "/metrics",
      [raw](HttpExchange& exchange) {
        exchange.Respond(
            HttpResponse{.status = 200,
                         .headers = {{"content-type", "text/plain; version=0.0.4; charset=utf-8"}},
                         .body = raw->metrics->Render()});
      },
      HttpRouter::Dispatch::kWorker);
  if (!s.ok()) return s;
  HttpServerOptions http_options = HttpOptionsOf(config, p.options);
  http_options.on_response = [raw](std::string_view route, std::string_view, int status,
                                   absl::Duration latency) {
    raw->metrics->ObserveRequest(HttpApi::EndpointOfRoute(route), Transport::kHttp, status,
                                 latency);
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> http =
      HttpServer::Start(std::move(http_options), *p.http_router);
  if (!http.ok()) return http.status();
  p.http = *std::move(http);
  return absl::OkStatus();
}

void Server::StartEvictor(Parts& p) {
  Parts* raw = &p;
  p.evictor = std::thread([raw] {
    for (;;) {
      {
        absl::MutexLock lock(&raw->mu);
        if (raw->mu.AwaitWithTimeout(absl::Condition(&raw->stopping),
                                     raw->options.eviction_period)) {
          return;
        }
      }
      raw->engine->EvictIdle(raw->options.clock());
      raw->images->DropExpired();
    }
  });
}

const std::string& Server::grpc_address() const { return parts_->grpc_address; }
const std::string& Server::http_address() const { return parts_->http->address(); }
const std::string& Server::admin_address() const { return parts_->admin_address; }
int Server::http_port() const { return parts_->http->port(); }
Gateway& Server::gateway() { return *parts_->gateway; }

void Server::Shutdown() { Shutdown(parts_->drain_delay, parts_->shutdown_grace); }

void Server::Shutdown(absl::Duration drain_delay, absl::Duration grace) {
  {
    absl::MutexLock lock(&parts_->mu);
    if (parts_->stopping) return;
    parts_->stopping = true;
  }
  parts_->ready.store(false, std::memory_order_release);
  // Calls are still served while a load balancer takes in the 503.
  if (drain_delay > absl::ZeroDuration()) absl::SleepFor(drain_delay);
  // Both fronts drain at once, against one deadline. gRPC: no new calls (a GOAWAY) ...
  const absl::Time deadline = absl::Now() + grace;
  parts_->http->BeginShutdown();
  parts_->anyai_service->BeginShutdown();
  // (Core's queue: grpc::Server::Shutdown() below waits on its own, this one only collects
  // the notifications.)
  grpc_completion_queue* notified = grpc_completion_queue_create_for_next(nullptr);
  // (Our listeners stop first: gRPC drops, unclosed, a connection handed to it after.)
  parts_->grpc_acceptor->Stop();
  parts_->admin_acceptor->Stop();
  grpc_server* servers[] = {parts_->grpc->c_server(), parts_->admin->c_server()};
  for (grpc_server* server : servers) grpc_server_shutdown_and_notify(server, notified, nullptr);
  // ... then as soon as no call is in flight (or at the deadline, cutting those that are) the
  // connections close: gRPC alone would wait for idle clients to leave until the deadline.
  parts_->grpc_calls.AwaitNone(deadline);
  for (grpc_server* server : servers) grpc_server_cancel_all_calls(server);
  for (grpc::Server* server : {parts_->grpc.get(), parts_->admin.get()}) {
    server->Shutdown(absl::ToChronoTime(deadline));
    server->Wait();
  }
  parts_->admin_service->Stop();
  parts_->anyai_service->Stop();
  grpc_completion_queue_shutdown(notified);
  while (grpc_completion_queue_next(notified, gpr_inf_future(GPR_CLOCK_REALTIME), nullptr).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(notified);
  parts_->http->Shutdown(deadline);
  if (parts_->evictor.joinable()) parts_->evictor.join();
  {
    absl::MutexLock lock(&parts_->mu);
    parts_->stopped = true;
  }
}

void Server::Wait() {
  absl::MutexLock lock(&parts_->mu);
  parts_->mu.Await(absl::Condition(&parts_->stopped));
}

}  // namespace anyai::server
