// The query strings of the GET endpoints (SPEC §4) -> the proto requests the gRPC front uses
// too. Parameters are application/x-www-form-urlencoded ('+' is a space, %XX a byte);
// parameters an endpoint does not know are ignored, an empty value ("width=") is absent, and
// a known parameter given twice is 400. Integers are plain decimal ("-?[0-9]+") in the proto
// field's type: "abc", "1.5", "1e3", " 5" are 400 naming the parameter. Ranges and the rest of
// SPEC §10 are validation.h's.
//
//   /v1/imagine         prompt, negative_prompt, width, height, steps, seed, model
//   /v1/ask             prompt
//   /v1/images/vision   url, model
//   /check              key
//
// Errors are INVALID_ARGUMENT from errors.h, whose `param` is the parameter's name.
//
// Thread safety: pure functions.
#ifndef ANYAI_SERVER_HTTP_HTTP_QUERY_H_
#define ANYAI_SERVER_HTTP_HTTP_QUERY_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "anyai/v1/anyai.pb.h"

namespace anyai::server {

// `query` (without '?') as decoded (name, value) pairs in order. INVALID_ARGUMENT for a
// malformed %-escape.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> DecodeQuery(
    std::string_view query);

absl::StatusOr<v1::ImagineRequest> ImagineRequestFromQuery(std::string_view query);
absl::StatusOr<v1::AskRequest> AskRequestFromQuery(std::string_view query);
absl::StatusOr<v1::DescribeImageRequest> DescribeImageRequestFromQuery(std::string_view query);
// /check's `key`; empty when absent.
absl::StatusOr<std::string> CheckKeyFromQuery(std::string_view query);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_HTTP_QUERY_H_
