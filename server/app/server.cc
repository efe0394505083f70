#include "server/app/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "quota/engine.h"
#include "server/config/config.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/proto_time.h"
#include "server/gateway/validation.h"
#include "server/grpc/admin_service.h"
#include "server/grpc/anyai_service.h"
#include "server/grpc/grpc_metrics.h"
#include "server/http/http_api.h"
#include "server/http/http_router.h"
#include "server/http/http_server.h"
#include "server/metrics/metered_provider.h"
#include "server/metrics/metrics.h"
#include "server/net/host_port.h"
#include "server/providers/provider_registry.h"
#include "storage/database.h"
#include "storage/rocksdb_key_store.h"
#include "storage/usage_schema.h"
#include "storage/usage_store.h"

namespace anyai::server {
namespace {

// The HTTP front's settings; a zero (unset) field means its DefaultConfig() value.
HttpServerOptions HttpOptionsOf(const v1::ServerConfig& config, const ServerOptions& options) {
  const v1::ServerConfig defaults = DefaultConfig();
  const auto pick = [](int64_t value, int64_t fallback) { return value > 0 ? value : fallback; };
  const auto duration = [](const google::protobuf::Duration& d,
                           const google::protobuf::Duration& fallback) {
    return FromProto(d) > absl::ZeroDuration() ? FromProto(d) : FromProto(fallback);
  };
  HttpServerOptions out;
  out.listen = config.http_listen().empty() ? defaults.http_listen() : config.http_listen();
  out.max_body_bytes = pick(config.max_body_bytes(), defaults.max_body_bytes());
  out.max_header_bytes = pick(config.max_header_bytes(), defaults.max_header_bytes());
  out.idle_timeout = duration(config.http_idle_timeout(), defaults.http_idle_timeout());
  out.read_timeout = duration(config.http_read_timeout(), defaults.http_read_timeout());
  // A client gets as long to take an answer's bytes as to send its request.
  out.write_timeout = out.read_timeout;
  out.io_threads = options.http_io_threads;
  out.worker_threads = options.http_worker_threads;
  return out;
}

}  // namespace

struct Server::Parts {
  ServerOptions options;
  std::unique_ptr<storage::Database> database;
  std::unique_ptr<storage::RocksDbKeyStore> keys;
  std::unique_ptr<storage::UsageStore> usage;
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
  std::unique_ptr<grpc::Server> grpc;
  std::string grpc_address;
  int grpc_port = 0;
  // The HTTP front: its routes (the API's, and any other route added before the server
  // starts, such as /metrics) and the server that serves them. Declared after the Gateway
  // they use, so they are destroyed before it (Shutdown() has stopped them by then).
  std::unique_ptr<HttpApi> http_api;
  std::unique_ptr<HttpRouter> http_router;
  std::unique_ptr<HttpServer> http;
  // /readyz: true from the end of Start() until Shutdown() begins.
  std::atomic<bool> ready{false};

  absl::Mutex mu;  // waiters Await() the flags below
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  std::thread evictor;
};

Server::Server(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const v1::ServerConfig& config,
                                                      ServerOptions options) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;
  if (!config.postgres_dsn().empty()) {
    return absl::UnimplementedError(
        "postgres_dsn: cluster mode (key records in PostgreSQL, SPEC §9) is not implemented in "
        "this build; leave it empty to keep keys in the embedded RocksDB");
  }
  auto p = std::make_unique<Parts>();
  p->options = std::move(options);
  absl::StatusOr<quota::PlanTable> plans = PlanTableFromConfig(config);
  if (!plans.ok()) return plans.status();
  if (absl::Status s = OpenStorage(config, *plans, *p); !s.ok()) return s;
  quota::EngineOptions engine_options{.sink = p->usage.get(),
                                      .loader = p->usage.get(),
                                      .max_resident_tenants = config.max_resident_tenants()};
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
  if (absl::Status s = StartGrpc(config, *p); !s.ok()) {
    p->http->BeginShutdown();
    p->http->Shutdown(absl::Now());
    return s;
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
  absl::StatusOr<std::unique_ptr<storage::RocksDbKeyStore>> keys =
      storage::RocksDbKeyStore::Open(*p.database);
  if (!keys.ok()) return keys.status();
  p.keys = *std::move(keys);
  // The usage store must exist before the engine that writes to it, and describes the
  // engine's classes: a sink-less engine on the same plans gives their layout.
  absl::StatusOr<std::unique_ptr<quota::Engine>> layout = quota::Engine::Create(plans, {});
  if (!layout.ok()) return layout.status();
  absl::StatusOr<std::unique_ptr<storage::UsageStore>> usage = storage::UsageStore::Open(
      *p.database, storage::UsageClassesOf(**layout), {.clock = p.options.clock});
  if (!usage.ok()) return usage.status();
  p.usage = *std::move(usage);
  return absl::OkStatus();
}

absl::Status Server::BuildGateway(const v1::ServerConfig& config, Parts& p) {
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(config);
  if (!catalogue.ok()) return catalogue.status();
  p.catalogue = std::make_unique<Catalogue>(*std::move(catalogue));
  absl::StatusOr<ProviderRegistry> providers = MakeProviders(config, p.options.clock);
  if (!providers.ok()) return providers.status();
  p.providers = *std::move(providers);

  MetricsSources sources;
  sources.storage = {{"usage", [usage = p.usage.get()] { return usage->write_stats(); }},
                     {"keys", [keys = p.keys.get()] { return keys->write_stats(); }}};
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
      .keys = p.keys.get(),
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
      .clock = p.options.clock,
      .observer = p.metrics.get(),
      .images = p.images.get(),
  });
  if (!gateway.ok()) return gateway.status();
  p.gateway = *std::move(gateway);
  return absl::OkStatus();
}

absl::Status Server::StartGrpc(const v1::ServerConfig& config, Parts& p) {
  p.anyai_service =
      std::make_unique<AnyAIService>(*p.gateway, config.public_base_url(), p.http->port());
  p.admin_service = std::make_unique<AdminService>(*p.gateway);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.grpc_listen(), grpc::InsecureServerCredentials(), &p.grpc_port);
  builder.RegisterService(p.anyai_service.get());
  builder.RegisterService(p.admin_service.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MakeGrpcMetricsInterceptor(
      [metrics = p.metrics.get()](Endpoint endpoint, int status, absl::Duration latency) {
        metrics->ObserveRequest(endpoint, Transport::kGrpc, status, latency);
      }));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  p.grpc = builder.BuildAndStart();
  if (p.grpc == nullptr || p.grpc_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("grpc_listen: cannot listen on \"", config.grpc_listen(), "\""));
  }
  // The config was validated: grpc_listen is HOST:PORT.
  absl::StatusOr<net::HostPort> listen = net::HostPort::Parse(config.grpc_listen());
  if (!listen.ok()) return listen.status();
  p.grpc_address = net::HostPort{listen->host, p.grpc_port}.ToString();
  return absl::OkStatus();
}

absl::Status Server::StartHttp(const v1::ServerConfig& config, Parts& p) {
  Parts* raw = &p;
  p.http_router = std::make_unique<HttpRouter>();
  p.http_api = std::make_unique<HttpApi>(
      *p.gateway,
      // Not ready while storage is failing either, so that a load balancer stops sending.
      [raw] { return raw->ready.load(std::memory_order_acquire) && raw->database->healthy(); },
      config.public_base_url());
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
int Server::http_port() const { return parts_->http->port(); }
Gateway& Server::gateway() { return *parts_->gateway; }

void Server::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&parts_->mu);
    if (parts_->stopping) return;
    parts_->stopping = true;
  }
  parts_->ready.store(false, std::memory_order_release);
  // Both fronts drain at once, against one deadline.
  const absl::Time deadline = absl::Now() + grace;
  parts_->http->BeginShutdown();
  parts_->grpc->Shutdown(absl::ToChronoTime(deadline));
  parts_->grpc->Wait();
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
