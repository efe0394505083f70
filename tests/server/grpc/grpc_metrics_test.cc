// server/grpc/grpc_metrics.cc: which endpoint and HTTP status a gRPC call is counted under.
#include "server/grpc/grpc_metrics.h"

#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "server/gateway/errors.h"
#include "server/grpc/grpc_status.h"

namespace anyai::server {
namespace {

TEST(HttpStatusOfGrpcStatus, CountsEveryCodeAsTheHttpFrontAnswersIt) {
  EXPECT_EQ(HttpStatusOfGrpcStatus(grpc::Status::OK), 200);
  EXPECT_EQ(HttpStatusOfGrpcStatus(grpc::Status(grpc::StatusCode::CANCELLED, "")), 499);
  EXPECT_EQ(HttpStatusOfGrpcStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "")), 429);
  EXPECT_EQ(HttpStatusOfGrpcStatus(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "")), 401);
  EXPECT_EQ(HttpStatusOfGrpcStatus(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "")), 504);
  EXPECT_EQ(HttpStatusOfGrpcStatus(grpc::Status(grpc::StatusCode::INTERNAL, "")), 500);
}

TEST(HttpStatusOfGrpcStatus, TellsAFailedUpstreamFromTheGatewaysStorage) {
  EXPECT_EQ(HttpStatusOfGrpcStatus(ToGrpcStatus(absl::UnavailableError("storage"))), 503);
  EXPECT_EQ(HttpStatusOfGrpcStatus(ToGrpcStatus(FromProvider(absl::UnavailableError("up")))), 502);
  // Details that do not parse are no reason to count a failure as a success.
  EXPECT_EQ(HttpStatusOfGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "x", "\xff\xff")),
            503);
}

TEST(EndpointOfGrpcMethod, NamesEveryMethodsEndpoint) {
  EXPECT_EQ(EndpointOfGrpcMethod("/anyai.v1.AnyAI/CreateChatCompletion"),
            Endpoint::kChatCompletions);
  EXPECT_EQ(EndpointOfGrpcMethod("/anyai.v1.AnyAI/StreamChatCompletion"),
            Endpoint::kChatCompletions);
  EXPECT_EQ(EndpointOfGrpcMethod("/anyai.v1.AnyAI/CheckKey"), Endpoint::kCheck);
  EXPECT_EQ(EndpointOfGrpcMethod("/anyai.v1.Admin/CreateKey"), Endpoint::kAdmin);
  EXPECT_EQ(EndpointOfGrpcMethod("/grpc.health.v1.Health/Check"), Endpoint::kHealth);
  EXPECT_EQ(EndpointOfGrpcMethod("/grpc.reflection.v1alpha.ServerReflection/Info"),
            Endpoint::kOther);
}

}  // namespace
}  // namespace anyai::server
