// server/grpc/grpc_status.cc: what ToGrpcStatus sends of a refusal, from its memo, is what it
// sends of a fresh one, byte for byte, for many random refusal states.
#include "server/grpc/grpc_status.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "server/gateway/errors.h"
#include "tests/server/gateway/random_refusals.h"

namespace anyai::server {
namespace {

using ::anyai::server::testing::RandomRefusals;

std::string Describe(const grpc::Status& s) {
  return std::to_string(s.error_code()) + "|" + s.error_message() + "|" + s.error_details();
}

TEST(ToGrpcStatusTest, ARefusalFromTheMemoIsSentAsAFreshOne) {
  RandomRefusals random(3);
  for (int i = 0; i < 20000; ++i) {
    const RateLimitInfo info = random.Next();
    // RateLimited's status (a copy of one kept while the state repeats, rendered from the memo
    // after the first time) against one built apart (a miss every time).
    const std::string memoized = Describe(ToGrpcStatus(RateLimited(info)));
    ASSERT_EQ(memoized, Describe(ToGrpcStatus(RateLimitedUncached(info)))) << i;
    ASSERT_EQ(memoized, Describe(ToGrpcStatus(RateLimited(info)))) << i;
  }
}

TEST(ToGrpcStatusTest, StatesTheClientCanTellApartAreSentApart) {
  RandomRefusals random(4);
  for (int i = 0; i < 2000; ++i) {
    const RateLimitInfo base = random.Next();
    for (int field = 0; field < RandomRefusals::kFields; ++field) {
      RateLimitInfo variant = base;
      random.Redraw(field, variant);
      const std::string a = Describe(ToGrpcStatus(RateLimited(base)));
      const std::string b = Describe(ToGrpcStatus(RateLimited(variant)));
      ASSERT_EQ(b, Describe(ToGrpcStatus(RateLimitedUncached(variant)))) << "field " << field;
      if (RateLimitKey(base) == RateLimitKey(variant)) {
        EXPECT_EQ(a, b) << "field " << field;
      } else {
        EXPECT_NE(a, b) << "field " << field;
      }
    }
  }
}

TEST(ToGrpcStatusTest, OtherStatusesAsBefore) {
  const grpc::Status ok = ToGrpcStatus(absl::OkStatus());
  EXPECT_TRUE(ok.ok());
  const absl::Status bare(absl::StatusCode::kResourceExhausted, "");
  EXPECT_EQ(ToGrpcStatus(bare).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(bare).error_details(), "");
  const absl::Status metadata = absl::ResourceExhaustedError("the call's metadata is 9 bytes");
  EXPECT_EQ(ToGrpcStatus(metadata).error_message(), "the call's metadata is 9 bytes");
  EXPECT_EQ(ToGrpcStatus(metadata).error_details(), "");
  const absl::Status too_many = TooManyFailedAuthentications(absl::Seconds(3));
  EXPECT_EQ(ToGrpcStatus(too_many).error_details(), ToRpcStatus(too_many).SerializeAsString());
}

}  // namespace
}  // namespace anyai::server
