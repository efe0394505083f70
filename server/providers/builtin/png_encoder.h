// Encodes 8-bit RGB pixels as a PNG file (truecolour, no alpha, not interlaced), for the
// builtin provider's Imagine (see image_renderer.h), with libpng writing to memory.
//
// Compression favours speed over size (zlib level 1 over rows all filtered with PNG's Sub
// filter), because the encoder sits on the request path: a rendered 1024x1024 picture filters
// and deflates in about 20 ms on one core (bench/png_bench.cc, bench/RESULTS.md). The output
// is deterministic for a given libpng and zlib build.
//
// Thread-safe: a pure function with no shared state.
#ifndef ANYAI_SERVER_PROVIDERS_BUILTIN_PNG_ENCODER_H_
#define ANYAI_SERVER_PROVIDERS_BUILTIN_PNG_ENCODER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace anyai::server {

// The largest width or height EncodePng accepts. 4096x4096 RGB is 48 MiB of pixels, the most a
// single request may make the process hold.
inline constexpr int kMaxPngSide = 4096;

// Returns the PNG file for a `width` x `height` picture whose pixels are `rgb`: rows top to
// bottom, each row left to right, three bytes (R, G, B) per pixel, no padding. InvalidArgument
// if a side is not in [1, kMaxPngSide] or `rgb.size()` is not width * height * 3; Internal if
// libpng fails.
absl::StatusOr<std::string> EncodePng(int width, int height, absl::Span<const uint8_t> rgb);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_PROVIDERS_BUILTIN_PNG_ENCODER_H_
