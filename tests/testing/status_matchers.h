// StatusIs / IsOk matchers for absl::Status and absl::StatusOr<T> (Abseil 20220623 has no
// public ones). Header-only; use from any test.
#ifndef ANYAI_TESTS_TESTING_STATUS_MATCHERS_H_
#define ANYAI_TESTS_TESTING_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace anyai::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("window")));
MATCHER_P2(StatusIs, code, message_matcher,
           "has status code " + std::string(absl::StatusCodeToString(code))) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "whose status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "whose status is " << s;
  return s.ok();
}

}  // namespace anyai::testing

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::anyai::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::anyai::testing::IsOk())

#endif  // ANYAI_TESTS_TESTING_STATUS_MATCHERS_H_
