// The builtin provider's picture maker for Imagine (SPEC §5). It is a stand-in for an image
// model, not a model: it paints a layered landscape (a sky gradient, a sun or moon, soft
// clouds, misty ridges, stars at night) whose palette, shapes and positions come from a stable
// hash of the request, and encodes it as a PNG of exactly the requested size. The prompt only
// steers it through a few words that pick the palette ("night", "sunset", "dawn", "desert",
// "snow", "day"); everything else about it is hashed.
//
// Deterministic: the same request gives the same bytes, in any process, on any run. The hash is
// FNV-1a followed by splitmix64 (std::hash and absl::Hash are seeded per process and would
// not do), and the painting uses only +, -, *, / and sqrt in float (no libm sin or exp, which
// vary between libm versions), so the pixels agree across machines that do not contract
// a*b+c into fused multiply-adds (x86-64 builds do not); the compressed bytes also depend on
// the libpng and zlib builds. Every field of RenderRequest takes part: changing any one of them
// changes the picture.
//
// Fast: a 1024x1024 request renders and encodes in about 30 ms on one core (Release): about
// half painting, half filtering and deflating.
//
// Thread-safe: a pure function with no shared state.
#ifndef ANYAI_SERVER_PROVIDERS_BUILTIN_IMAGE_RENDERER_H_
#define ANYAI_SERVER_PROVIDERS_BUILTIN_IMAGE_RENDERER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace anyai::server {

// One Imagine request as the renderer sees it; the fronts have validated it already.
struct RenderRequest {
  std::string prompt;
  std::string negative_prompt;
  // Size of the picture in pixels, each in [1, kMaxPngSide] (png_encoder.h).
  int width = 512;
  int height = 512;
  // A model's denoising steps; here it only sets how many octaves the ridges have (more steps,
  // more detail, from 2 octaves below 25 steps up to 4 from 50) and seeds the hash.
  int steps = 20;
  int64_t seed = 0;
  std::string model;
};

// Returns a PNG (8-bit RGB) of exactly request.width x request.height. InvalidArgument if a
// side is outside [1, kMaxPngSide]; no other field is range-checked here.
absl::StatusOr<std::string> RenderPng(const RenderRequest& request);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_PROVIDERS_BUILTIN_IMAGE_RENDERER_H_
