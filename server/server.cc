#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "quota/engine.h"
#include "server/admin_service.h"
#include "server/anyai_service.h"
#include "server/builtin_provider.h"
#include "server/catalogue.h"
#include "server/config.h"
#include "server/http_api.h"
#include "server/http_router.h"
#include "server/http_server.h"
#include "storage/database.h"
#include "storage/rocksdb_key_store.h"
#include "storage/usage_store.h"

namespace anyai::server {
namespace {

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// The storage's description of the engine's classes, in the engine's ClassId order.
std::vector<storage::ClassInfo> ClassInfos(const quota::PlanTable& plans) {
  std::vector<storage::ClassInfo> out;
  for (const std::string& name : plans.FeatureClasses()) {
    absl::Duration shortest = absl::InfiniteDuration();
    absl::Duration longest = absl::ZeroDuration();
    for (const quota::Plan& p : plans.plans) {
      for (const quota::Window& w : p.Find(name)->windows) {
        shortest = std::min(shortest, w.length);
        longest = std::max(longest, w.length);
      }
    }
    out.push_back(storage::ClassInfo{name, shortest / 60, longest});
  }
  return out;
}

absl::StatusOr<Catalogue> CatalogueOf(const v1::ServerConfig& config) {
  if (config.models().empty()) return Catalogue::Create(DefaultModels());
  std::vector<ModelInfo> models;
  for (const v1::ModelConfig& m : config.models()) {
    models.push_back(ModelInfo{
        .id = m.id(),
        .owned_by = m.owned_by(),
        .created = m.created(),
        .feature_class = m.feature_class(),
        .provider = m.provider().empty() ? config.default_chat_provider() : m.provider()});
  }
  absl::StatusOr<Catalogue> c = Catalogue::Create(std::move(models));
  if (!c.ok()) return absl::InvalidArgumentError(absl::StrCat("models: ", c.status().message()));
  return c;
}

EndpointModels EndpointModelsOf(const v1::EndpointConfig& endpoint, EndpointModels defaults) {
  if (!endpoint.models().empty()) {
    defaults.models.assign(endpoint.models().begin(), endpoint.models().end());
    defaults.default_model = defaults.models.front();
  }
  if (!endpoint.default_model().empty()) defaults.default_model = endpoint.default_model();
  return defaults;
}

std::string ProviderOf(const v1::EndpointConfig& endpoint) {
  return endpoint.provider().empty() ? std::string("builtin") : endpoint.provider();
}

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
  std::unique_ptr<BuiltinProvider> builtin;
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

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;  // guarded by mu
  bool stopped = false;   // guarded by mu
  std::thread evictor;
};

Server::Server(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const v1::ServerConfig& config,
                                                      ServerOptions options) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;
  auto p = std::make_unique<Parts>();
  p->options = std::move(options);

  absl::StatusOr<quota::PlanTable> plans = PlanTableFromConfig(config);
  if (!plans.ok()) return plans.status();
  absl::StatusOr<std::unique_ptr<storage::Database>> db = storage::Database::Open(
      {.data_dir = config.data_dir(),
       .durability = config.durability() == v1::DURABILITY_FSYNC
                         ? storage::Durability::kFsync
                         : storage::Durability::kProcessCrash});
  if (!db.ok()) return db.status();
  p->database = *std::move(db);
  absl::StatusOr<std::unique_ptr<storage::RocksDbKeyStore>> keys =
      storage::RocksDbKeyStore::Open(*p->database);
  if (!keys.ok()) return keys.status();
  p->keys = *std::move(keys);
  absl::StatusOr<std::unique_ptr<storage::UsageStore>> usage =
      storage::UsageStore::Open(*p->database, ClassInfos(*plans), {.clock = p->options.clock});
  if (!usage.ok()) return usage.status();
  p->usage = *std::move(usage);

  quota::EngineOptions engine_options{.sink = p->usage.get(), .loader = p->usage.get()};
  if (config.has_idle_tenant_timeout()) {
    engine_options.idle_timeout = FromProto(config.idle_tenant_timeout());
  }
  absl::StatusOr<std::unique_ptr<quota::Engine>> engine =
      quota::Engine::Create(*std::move(plans), engine_options);
  if (!engine.ok()) return engine.status();
  p->engine = *std::move(engine);

  absl::StatusOr<Catalogue> catalogue = CatalogueOf(config);
  if (!catalogue.ok()) return catalogue.status();
  p->catalogue = std::make_unique<Catalogue>(*std::move(catalogue));
  p->builtin = std::make_unique<BuiltinProvider>(p->options.clock);

  GatewayParts parts{
      .engine = p->engine.get(),
      .keys = p->keys.get(),
      .catalogue = p->catalogue.get(),
      .image_models = EndpointModelsOf(config.image_generation(), DefaultImageGenerationModels()),
      .imagine_models = EndpointModelsOf(config.imagine(), DefaultImagineModels()),
      .vision_models = EndpointModelsOf(config.vision(), DefaultVisionModels()),
      .providers = {{"builtin", p->builtin.get()}},
      .image_provider = ProviderOf(config.image_generation()),
      .imagine_provider = ProviderOf(config.imagine()),
      .ask_provider = ProviderOf(config.ask()),
      .vision_provider = ProviderOf(config.vision()),
      .anonymous_plan = config.anonymous_plan(),
      .admin_token = config.admin_token(),
      .storage_failure_policy =
          config.storage_failure_policy() == v1::STORAGE_FAILURE_POLICY_FAIL_OPEN
              ? StorageFailurePolicy::kFailOpen
              : StorageFailurePolicy::kFailClosed,
      .max_messages = config.max_messages() > 0 ? config.max_messages() : 256,
      .trusted_proxies = {},
      .clock = p->options.clock,
  };
  for (const v1::ProviderConfig& provider : config.providers()) {
    if (provider.name() != "builtin") {
      return absl::UnimplementedError(absl::StrCat(
          "providers: \"", provider.name(),
          "\": only the builtin provider is available in this build"));
    }
  }
  absl::StatusOr<TrustedProxies> proxies = TrustedProxies::Create(
      {config.trusted_proxies().begin(), config.trusted_proxies().end()});
  if (!proxies.ok()) return proxies.status();
  parts.trusted_proxies = *std::move(proxies);
  absl::StatusOr<std::unique_ptr<Gateway>> gateway = Gateway::Create(std::move(parts));
  if (!gateway.ok()) return gateway.status();
  p->gateway = *std::move(gateway);

  p->anyai_service = std::make_unique<AnyAIService>(*p->gateway);
  p->admin_service = std::make_unique<AdminService>(*p->gateway);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.grpc_listen(), grpc::InsecureServerCredentials(),
                           &p->grpc_port);
  builder.RegisterService(p->anyai_service.get());
  builder.RegisterService(p->admin_service.get());
  p->grpc = builder.BuildAndStart();
  if (p->grpc == nullptr || p->grpc_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("grpc_listen: cannot listen on \"", config.grpc_listen(), "\""));
  }
  const std::string& listen = config.grpc_listen();
  p->grpc_address = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", p->grpc_port);

  Parts* raw = p.get();
  p->http_router = std::make_unique<HttpRouter>();
  p->http_api = std::make_unique<HttpApi>(
      *p->gateway, [raw] { return raw->ready.load(std::memory_order_acquire); });
  absl::Status routes = p->http_api->AddRoutes(*p->http_router);
  absl::StatusOr<std::unique_ptr<HttpServer>> http =
      routes.ok() ? HttpServer::Start(HttpOptionsOf(config, p->options), *p->http_router)
                  : absl::StatusOr<std::unique_ptr<HttpServer>>(routes);
  if (!http.ok()) {
    p->grpc->Shutdown();
    p->grpc->Wait();
    return http.status();
  }
  p->http = *std::move(http);

  p->evictor = std::thread([raw] {
    std::unique_lock<std::mutex> lock(raw->mu);
    while (!raw->stopping) {
      raw->cv.wait_for(lock, absl::ToChronoSeconds(raw->options.eviction_period));
      if (raw->stopping) break;
      lock.unlock();
      raw->engine->EvictIdle(raw->options.clock());
      lock.lock();
    }
  });
  p->ready.store(true, std::memory_order_release);
  return std::unique_ptr<Server>(new Server(std::move(p)));
}

const std::string& Server::grpc_address() const { return parts_->grpc_address; }
int Server::grpc_port() const { return parts_->grpc_port; }
const std::string& Server::http_address() const { return parts_->http->address(); }
int Server::http_port() const { return parts_->http->port(); }
Gateway& Server::gateway() { return *parts_->gateway; }

void Server::Shutdown(absl::Duration grace) {
  {
    std::lock_guard<std::mutex> lock(parts_->mu);
    if (parts_->stopping) return;
    parts_->stopping = true;
  }
  parts_->cv.notify_all();
  parts_->ready.store(false, std::memory_order_release);
  // Both fronts drain at once, against one deadline.
  const absl::Time deadline = absl::Now() + grace;
  parts_->http->BeginShutdown();
  parts_->grpc->Shutdown(absl::ToChronoTime(deadline));
  parts_->grpc->Wait();
  parts_->http->Shutdown(deadline);
  if (parts_->evictor.joinable()) parts_->evictor.join();
  {
    std::lock_guard<std::mutex> lock(parts_->mu);
    parts_->stopped = true;
  }
  parts_->cv.notify_all();
}

void Server::Wait() {
  std::unique_lock<std::mutex> lock(parts_->mu);
  parts_->cv.wait(lock, [this] { return parts_->stopped; });
}

}  // namespace anyai::server
