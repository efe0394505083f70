// A Gateway over real parts, for the tests that drive one: RocksDB in a temp dir (keys and
// usage), the engine on the given plans with that storage as its sink and loader, the seed's
// catalogue, a frozen clock; and ScriptedProvider, the builtin provider behind a switch that
// fails as an upstream does (the one scripted fake the house style allows).
//
//   GatewayRig rig(plans, kNow);
//   rig.Start([&](GatewayParts& parts) { parts.providers = {{"builtin", &provider}}; });
//   rig.gateway->Chat(caller, request);
//
// Thread safety: as the parts it holds (the Gateway is thread-safe); build it on one thread.
#ifndef ANYAI_TESTS_SERVER_GATEWAY_GATEWAY_RIG_H_
#define ANYAI_TESTS_SERVER_GATEWAY_GATEWAY_RIG_H_

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "quota/engine.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/gateway.h"
#include "server/gateway/provider.h"
#include "server/providers/builtin/builtin_provider.h"
#include "storage/database.h"
#include "storage/rocksdb_key_store.h"
#include "storage/usage_store.h"
#include "tests/testing/temp_dir.h"

namespace anyai::server {

// The builtin provider, or a failure: before any output, after `chunks` chunks of a stream, a
// refusal (the upstream's 4xx), or a client that left while the upstream worked.
class ScriptedProvider : public Provider {
 public:
  enum class Mode { kAnswer, kFailBeforeOutput, kFailAfterChunks, kRefuse, kClientGone };
  explicit ScriptedProvider(absl::Time now) : builtin_([now] { return now; }) {}

  Mode mode = Mode::kAnswer;
  int chunks = 1;
  // Called before each chunk of a stream (to act while the call is in flight).
  std::function<void()> during_stream;
  // Called when a unary call (Chat, Imagine) or a stream starts, before it answers.
  std::function<void()> during_call;
  // What a failing upstream says: as a real one's transport does, it names where it is.
  static constexpr char kUnreachable[] =
      "upstream \"openai\" is unreachable: Failed to connect to 10.20.30.40 port 8443 after 2 ms "
      "(http://10.20.30.40:8443/v1/chat/completions)";

  absl::StatusOr<v1::ChatCompletion> Chat(const v1::ChatCompletionRequest& request) override {
    if (during_call) during_call();
    if (mode == Mode::kRefuse) return absl::InvalidArgumentError("upstream: bad request");
    if (mode == Mode::kClientGone) return absl::CancelledError("the client went away");
    if (mode != Mode::kAnswer) return absl::UnavailableError(kUnreachable);
    return builtin_.Chat(request);
  }
  absl::Status StreamChat(const v1::ChatCompletionRequest& request,
                          absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit) override {
    if (during_call) during_call();
    if (mode == Mode::kFailBeforeOutput) return absl::UnavailableError(kUnreachable);
    int sent = 0;
    absl::Status cut = absl::OkStatus();
    absl::Status s = builtin_.StreamChat(request, [&](const v1::ChatCompletionChunk& chunk) {
      if (during_stream) during_stream();
      if (mode == Mode::kFailAfterChunks && sent == chunks) {
        cut = absl::UnavailableError("upstream reset the stream");
        return false;
      }
      ++sent;
      return emit(chunk);
    });
    return cut.ok() ? s : cut;
  }
  absl::StatusOr<v1::GenerateImagesResponse> GenerateImages(
      const v1::GenerateImagesRequest& request) override {
    return builtin_.GenerateImages(request);
  }
  absl::StatusOr<v1::ImagineResponse> Imagine(const v1::ImagineRequest& request) override {
    if (during_call) during_call();
    if (mode != Mode::kAnswer) {
      return absl::DeadlineExceededError(
          "upstream \"openai\" timed out: Operation timed out after 30000 ms (10.20.30.40:8443)");
    }
    return builtin_.Imagine(request);
  }
  absl::Status Ask(const v1::AskRequest& request,
                   absl::FunctionRef<bool(const v1::AskChunk&)> emit) override {
    return builtin_.Ask(request, emit);
  }
  absl::StatusOr<v1::DescribeImageResponse> DescribeImage(
      const v1::DescribeImageRequest& request) override {
    return builtin_.DescribeImage(request);
  }

 private:
  BuiltinProvider builtin_;
};

struct GatewayRig {
  GatewayRig(quota::PlanTable plans, absl::Time now) : now(now) {
    db = *storage::Database::Open({.data_dir = dir.Sub("db")});
    keys = *storage::RocksDbKeyStore::Open(*db);
    std::vector<storage::ClassInfo> classes;
    {
      auto probe = *quota::Engine::Create(plans, {});
      classes = storage::UsageClassesOf(*probe);
    }
    usage = *storage::UsageStore::Open(*db, classes, {.clock = [now] { return now; }});
    engine = *quota::Engine::Create(std::move(plans), {.sink = usage.get(), .loader = usage.get()});
    catalogue = std::make_unique<Catalogue>(*Catalogue::Create(DefaultModels()));
  }

  // Creates the Gateway: engine, keys, catalogue, the default endpoint models and the frozen
  // clock are set; `customize` adds the providers and anything else.
  void Start(absl::FunctionRef<void(GatewayParts&)> customize) {
    GatewayParts parts;
    parts.engine = engine.get();
    parts.keys = keys.get();
    parts.catalogue = catalogue.get();
    parts.image_models = DefaultImageGenerationModels();
    parts.imagine_models = DefaultImagineModels();
    parts.vision_models = DefaultVisionModels();
    parts.clock = [now = now] { return now; };
    customize(parts);
    gateway = *Gateway::Create(std::move(parts));
  }

  const absl::Time now;
  ::anyai::testing::TempDir dir;
  std::unique_ptr<storage::Database> db;
  std::unique_ptr<storage::RocksDbKeyStore> keys;
  std::unique_ptr<storage::UsageStore> usage;
  std::unique_ptr<quota::Engine> engine;
  std::unique_ptr<Catalogue> catalogue;
  std::unique_ptr<Gateway> gateway;
};

}  // namespace anyai::server

#endif  // ANYAI_TESTS_SERVER_GATEWAY_GATEWAY_RIG_H_
