// The one conversion between protobuf's well-known time types (google.protobuf.Duration and
// Timestamp, as the protos and the config use them) and Abseil's absl::Duration and absl::Time,
// which the code computes with. Durations are exact to the nanosecond; times to the microsecond,
// as the engine keeps time.
//
// Thread safety: pure functions.
#ifndef ANYAI_SERVER_GATEWAY_PROTO_TIME_H_
#define ANYAI_SERVER_GATEWAY_PROTO_TIME_H_

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"

namespace anyai::server {

// Exact for every valid Duration (up to ±10000 years: nanoseconds in an int64 would overflow).
inline absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// Exact to the nanosecond (truncated below it), the sign carried by both fields as the proto asks.
inline google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
  return out;
}

inline absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(google::protobuf::util::TimeUtil::TimestampToMicroseconds(t));
}

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_PROTO_TIME_H_
