// Server reflection and health Watch on the completion queues (reflection_service.h,
// health_service.h), over real servers and channels with gRPC's generated stubs: a server of
// just the two services on CallQueues, to see their answers and that such a server runs no
// thread of gRPC's synchronous server; and the whole anyai-server Server, to see what its
// public port lists and describes, and that the process runs no such thread either.
#include "server/grpc/reflection_service.h"

#include <dirent.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "anyai/v1/admin.grpc.pb.h"
#include "anyai/v1/anyai.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/app/server.h"
#include "server/config/config.h"
#include "server/grpc/async_calls.h"
#include "server/grpc/health_service.h"
#include "tests/testing/temp_dir.h"

namespace anyai::server {
namespace {

using ::grpc::health::v1::HealthCheckResponse;
using ::grpc::reflection::v1alpha::ServerReflection;
using ::grpc::reflection::v1alpha::ServerReflectionRequest;
using ::grpc::reflection::v1alpha::ServerReflectionResponse;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAreArray;

using ReflectionStream =
    grpc::ClientReaderWriter<ServerReflectionRequest, ServerReflectionResponse>;

std::unique_ptr<grpc::ClientContext> Context() {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return c;
}

// The threads of this process gRPC's synchronous server runs (named "grpcpp_sync_server",
// which Linux cuts to 15 characters).
int SyncServerThreads() {
  int count = 0;
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return -1;
  while (const dirent* task = readdir(tasks)) {
    if (task->d_name[0] == '.') continue;
    std::ifstream comm(absl::StrCat("/proc/self/task/", task->d_name, "/comm"));
    std::string name;
    std::getline(comm, name);
    if (name.rfind("grpcpp_sync_ser", 0) == 0) ++count;
  }
  closedir(tasks);
  return count;
}

// One request and its answer on `stream`.
ServerReflectionResponse Ask(ReflectionStream& stream, const ServerReflectionRequest& request) {
  ServerReflectionResponse response;
  EXPECT_TRUE(stream.Write(request));
  EXPECT_TRUE(stream.Read(&response));
  return response;
}

ServerReflectionRequest ListServices() {
  ServerReflectionRequest request;
  request.set_list_services("");
  return request;
}

ServerReflectionRequest Symbol(const std::string& symbol) {
  ServerReflectionRequest request;
  request.set_file_containing_symbol(symbol);
  return request;
}

std::vector<std::string> ServiceNames(const ServerReflectionResponse& response) {
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  return names;
}

// The names of the files in a file_descriptor_response, in order.
std::vector<std::string> FileNames(const ServerReflectionResponse& response) {
  std::vector<std::string> names;
  for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    EXPECT_TRUE(file.ParseFromString(bytes));
    names.push_back(file.name());
  }
  return names;
}

// `file` and every file it imports, transitively.
std::set<std::string> FileAndDependencies(const std::string& name) {
  std::set<std::string> names;
  std::vector<const google::protobuf::FileDescriptor*> todo = {
      google::protobuf::DescriptorPool::generated_pool()->FindFileByName(name)};
  while (!todo.empty()) {
    const google::protobuf::FileDescriptor* file = todo.back();
    todo.pop_back();
    if (file == nullptr || !names.insert(file->name()).second) continue;
    for (int i = 0; i < file->dependency_count(); ++i) todo.push_back(file->dependency(i));
  }
  return names;
}

// Health and reflection alone on two completion queues, on a loopback port.
class QueuesServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&health_);
    builder.RegisterService(&reflection_);
    queues_.AddTo(builder);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    queues_.Start([this](CallQueue& queue) {
      health_.Arm(queue);
      reflection_.Arm(queue);
    });
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  }

  void TearDown() override { Stop(); }

  void Stop() {
    if (server_ == nullptr) return;
    health_.Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
    server_->Wait();
    queues_.Stop();
    server_.reset();
  }

  std::atomic<bool> serving_{true};
  HealthService health_{[this] { return serving_.load(); }};
  ReflectionService reflection_{{"test.First", "test.Second"}};
  CallQueues queues_{{.queues = 2, .calls_waiting = 4, .worker_threads = 1}};
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(QueuesServerTest, AnswersSeveralRequestsOnOneStreamInOrder) {
  auto stub = ServerReflection::NewStub(channel_);
  auto c = Context();
  std::unique_ptr<ReflectionStream> stream = stub->ServerReflectionInfo(c.get());

  ServerReflectionRequest list = ListServices();
  list.set_host("example.test");
  const ServerReflectionResponse listed = Ask(*stream, list);
  EXPECT_THAT(ServiceNames(listed), ElementsAre("test.First", "test.Second"));
  EXPECT_EQ(listed.valid_host(), "example.test");
  EXPECT_EQ(listed.original_request().SerializeAsString(), list.SerializeAsString());

  const ServerReflectionResponse health = Ask(*stream, Symbol("grpc.health.v1.Health.Watch"));
  EXPECT_THAT(FileNames(health), ElementsAre("grpc/health/v1/health.proto"));

  ServerReflectionRequest by_name;
  by_name.set_file_by_filename("grpc/reflection/v1alpha/reflection.proto");
  EXPECT_THAT(FileNames(Ask(*stream, by_name)),
              ElementsAre("grpc/reflection/v1alpha/reflection.proto"));

  const ServerReflectionResponse unknown = Ask(*stream, Symbol("no.such.Service"));
  EXPECT_EQ(unknown.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(unknown.error_response().error_message(), "Symbol not found.");
  by_name.set_file_by_filename("no/such.proto");
  EXPECT_EQ(Ask(*stream, by_name).error_response().error_code(), grpc::StatusCode::NOT_FOUND);

  // The stream goes on after an error.
  EXPECT_THAT(ServiceNames(Ask(*stream, ListServices())), ElementsAre("test.First", "test.Second"));
  EXPECT_EQ(Ask(*stream, ServerReflectionRequest()).error_response().error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  EXPECT_TRUE(stream->WritesDone());
  ServerReflectionResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(QueuesServerTest, AnswersExtensionsOfATypeAsGrpcDoes) {
  auto stub = ServerReflection::NewStub(channel_);
  auto c = Context();
  std::unique_ptr<ReflectionStream> stream = stub->ServerReflectionInfo(c.get());
  // descriptor.proto's options have extension ranges but no extension is linked in here.
  ServerReflectionRequest numbers;
  numbers.set_all_extension_numbers_of_type("google.protobuf.FieldOptions");
  const ServerReflectionResponse answer = Ask(*stream, numbers);
  ASSERT_TRUE(answer.has_all_extension_numbers_response()) << answer.DebugString();
  EXPECT_EQ(answer.all_extension_numbers_response().base_type_name(),
            "google.protobuf.FieldOptions");
  numbers.set_all_extension_numbers_of_type("no.Such");
  EXPECT_EQ(Ask(*stream, numbers).error_response().error_code(), grpc::StatusCode::NOT_FOUND);

  ServerReflectionRequest extension;
  extension.mutable_file_containing_extension()->set_containing_type(
      "google.protobuf.FieldOptions");
  extension.mutable_file_containing_extension()->set_extension_number(99999);
  const ServerReflectionResponse none = Ask(*stream, extension);
  EXPECT_EQ(none.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(none.error_response().error_message(), "Extension not found.");
  extension.mutable_file_containing_extension()->set_containing_type("no.Such");
  EXPECT_EQ(Ask(*stream, extension).error_response().error_message(), "Type not found.");
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(QueuesServerTest, ManyStreamsThatGoAwayMidwayLeaveNothingBehind) {
  auto stub = ServerReflection::NewStub(channel_);
  for (int i = 0; i < 50; ++i) {
    auto c = Context();
    std::unique_ptr<ReflectionStream> stream = stub->ServerReflectionInfo(c.get());
    EXPECT_TRUE(stream->Write(Symbol("grpc.health.v1.Health")));
    if (i % 2 == 0) {
      ServerReflectionResponse response;
      EXPECT_TRUE(stream->Read(&response));
    }
    c->TryCancel();  // mid-stream, a request or a response in flight
    stream->Finish();
  }
  // Stop waits for every call object to be gone: a stream left behind would hang it.
  Stop();
}

TEST_F(QueuesServerTest, RunsNoThreadOfTheSynchronousServer) {
  // The check sees such threads where they are: a server with a synchronous method has them.
  grpc::health::v1::Health::Service sync_health;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&sync_health);
  std::unique_ptr<grpc::Server> sync_server = builder.BuildAndStart();
  ASSERT_NE(sync_server, nullptr);
  for (int i = 0; i < 1000 && SyncServerThreads() == 0; ++i) {  // a thread names itself
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT(SyncServerThreads(), 0);
  sync_server->Shutdown(std::chrono::system_clock::now());
  sync_server->Wait();
  sync_server.reset();
  // Its threads end with it (joined when the server is destroyed; a moment to leave /proc).
  for (int i = 0; i < 1000 && SyncServerThreads() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(SyncServerThreads(), 0);

  // This server, after calls of every kind, has none.
  auto reflection = ServerReflection::NewStub(channel_);
  auto c = Context();
  std::unique_ptr<ReflectionStream> stream = reflection->ServerReflectionInfo(c.get());
  Ask(*stream, ListServices());
  auto health = grpc::health::v1::Health::NewStub(channel_);
  auto check = Context();
  HealthCheckResponse status;
  EXPECT_TRUE(health->Check(check.get(), {}, &status).ok());
  auto watch_context = Context();
  auto watch = health->Watch(watch_context.get(), {});
  EXPECT_TRUE(watch->Read(&status));
  EXPECT_EQ(SyncServerThreads(), 0);
  watch_context->TryCancel();
  stream->WritesDone();
  stream->Finish();
}

TEST_F(QueuesServerTest, WatchWritesTheStatusAtOnceThenEachChangeAndEndsWithTheServer) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  auto c = Context();
  auto watch = health->Watch(c.get(), {});
  HealthCheckResponse status;
  ASSERT_TRUE(watch->Read(&status));
  EXPECT_EQ(status.status(), HealthCheckResponse::SERVING);
  serving_ = false;
  ASSERT_TRUE(watch->Read(&status));  // within about a second
  EXPECT_EQ(status.status(), HealthCheckResponse::NOT_SERVING);
  serving_ = true;
  ASSERT_TRUE(watch->Read(&status));
  EXPECT_EQ(status.status(), HealthCheckResponse::SERVING);

  // A name the port does not serve, then the server stops: both watches end OK.
  grpc::health::v1::HealthCheckRequest other;
  other.set_service("no.Such");
  auto other_context = Context();
  auto other_watch = health->Watch(other_context.get(), other);
  ASSERT_TRUE(other_watch->Read(&status));
  EXPECT_EQ(status.status(), HealthCheckResponse::SERVICE_UNKNOWN);
  Stop();
  EXPECT_FALSE(watch->Read(&status));
  EXPECT_TRUE(watch->Finish().ok());
  EXPECT_FALSE(other_watch->Read(&status));
  EXPECT_TRUE(other_watch->Finish().ok());
}

TEST_F(QueuesServerTest, AWatchWhoseClientGoesEnds) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (int i = 0; i < 20; ++i) {
    auto c = Context();
    auto watch = health->Watch(c.get(), {});
    HealthCheckResponse status;
    ASSERT_TRUE(watch->Read(&status));
    c->TryCancel();
    EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // Without Shutdown's help: the server stops with its deadline only once every call object is
  // gone (CallQueues::Stop waits for them), so a watcher left behind would hang here.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  server_->Wait();
  queues_.Stop();
  server_.reset();
}

// The public port of the whole server.
class PublicPortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    v1::ServerConfig config = DefaultConfig();
    config.set_grpc_listen("127.0.0.1:0");
    config.set_http_listen("127.0.0.1:0");
    config.set_admin_listen("127.0.0.1:0");
    config.set_data_dir(dir_.Sub("data"));
    config.set_admin_token("test-admin-token");
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(config, {});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
  }

  ::anyai::testing::TempDir dir_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(PublicPortTest, ListsExactlyThePublicServicesAndDescribesAnyAI) {
  auto stub = ServerReflection::NewStub(channel_);
  auto c = Context();
  std::unique_ptr<ReflectionStream> stream = stub->ServerReflectionInfo(c.get());
  EXPECT_THAT(ServiceNames(Ask(*stream, ListServices())),
              UnorderedElementsAreArray({"anyai.v1.AnyAI", "grpc.health.v1.Health",
                                         "grpc.reflection.v1alpha.ServerReflection"}));

  const std::vector<std::string> files = FileNames(Ask(*stream, Symbol("anyai.v1.AnyAI")));
  ASSERT_FALSE(files.empty());
  EXPECT_EQ(files.front(), "anyai/v1/anyai.proto");
  const std::set<std::string> expected = FileAndDependencies("anyai/v1/anyai.proto");
  EXPECT_GT(expected.size(), 1u);  // it imports others
  EXPECT_THAT(files, UnorderedElementsAreArray(expected.begin(), expected.end()));
  // A method and a message are symbols of the same file.
  EXPECT_EQ(FileNames(Ask(*stream, Symbol("anyai.v1.AnyAI.CreateChatCompletion"))), files);
  EXPECT_EQ(FileNames(Ask(*stream, Symbol("anyai.v1.ChatCompletionRequest"))), files);

  const ServerReflectionResponse unknown = Ask(*stream, Symbol("anyai.v1.NoSuchService"));
  EXPECT_EQ(unknown.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(PublicPortTest, TheServerRunsNoThreadOfTheSynchronousServer) {
  // Neither port has a synchronous method (the Admin service is on completion queues too), so
  // after a call of each kind no thread of gRPC's synchronous server runs in the process.
  auto reflection = ServerReflection::NewStub(channel_);
  auto c = Context();
  std::unique_ptr<ReflectionStream> stream = reflection->ServerReflectionInfo(c.get());
  Ask(*stream, ListServices());
  auto health = grpc::health::v1::Health::NewStub(channel_);
  auto watch_context = Context();
  auto watch = health->Watch(watch_context.get(), {});
  HealthCheckResponse status;
  EXPECT_TRUE(watch->Read(&status));
  auto anyai = v1::AnyAI::NewStub(channel_);
  auto list = Context();
  v1::ListModelsResponse models;
  EXPECT_TRUE(anyai->ListModels(list.get(), {}, &models).ok());
  auto admin_channel =
      grpc::CreateChannel(server_->admin_address(), grpc::InsecureChannelCredentials());
  auto keys = Context();
  keys->AddMetadata("authorization", "Bearer test-admin-token");
  v1::ListKeysResponse listed;
  EXPECT_TRUE(v1::Admin::NewStub(admin_channel)->ListKeys(keys.get(), {}, &listed).ok());
  EXPECT_EQ(SyncServerThreads(), 0);
  watch_context->TryCancel();
  stream->WritesDone();
  stream->Finish();
}

}  // namespace
}  // namespace anyai::server
