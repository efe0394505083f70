// What EncodePng (server/providers/builtin/png_encoder.h) costs on the builtin renderer's real
// pictures, against a baseline in the same binary: zlib alone deflating the same pixels,
// unfiltered, at the same level 1 — the floor that any PNG encoder at these settings pays.
//
// The pixels are those of RenderPng's landscape (image_renderer.h), recovered by decoding its
// PNG with libpng once per size, so every encoder under test sees the same bytes. Throughput
// (bytes/s) counts raw RGB input; `png_bytes` is the encoded size and `ratio` is
// png_bytes / raw bytes.
#include <png.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "server/providers/builtin/image_renderer.h"
#include "server/providers/builtin/png_encoder.h"

namespace anyai::bench {
namespace {

// The renderer's pixels for a side x side sunset, decoded from its own PNG; cached per side.
const std::vector<uint8_t>& LandscapePixels(int side) {
  static auto* cache = new std::map<int, std::vector<uint8_t>>();
  auto it = cache->find(side);
  if (it != cache->end()) return it->second;

  server::RenderRequest request;
  request.prompt = "a sunset over misty hills";
  request.width = side;
  request.height = side;
  request.steps = 50;
  request.seed = 42;
  request.model = "sdxl";
  absl::StatusOr<std::string> png = server::RenderPng(request);
  if (!png.ok()) std::abort();

  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, png->data(), png->size())) std::abort();
  image.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> rgb(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, rgb.data(), 0, nullptr)) std::abort();
  if (rgb.size() != static_cast<size_t>(side) * side * 3) std::abort();
  return cache->emplace(side, std::move(rgb)).first->second;
}

void BM_EncodePng(benchmark::State& state) {
  const int side = static_cast<int>(state.range(0));
  const std::vector<uint8_t>& rgb = LandscapePixels(side);
  size_t png_bytes = 0;
  for (auto _ : state) {
    absl::StatusOr<std::string> png = server::EncodePng(side, side, rgb);
    if (!png.ok()) {
      state.SkipWithError("EncodePng failed");
      return;
    }
    png_bytes = png->size();
    benchmark::DoNotOptimize(png->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * rgb.size()));
  state.counters["png_bytes"] = static_cast<double>(png_bytes);
  state.counters["ratio"] = static_cast<double>(png_bytes) / static_cast<double>(rgb.size());
}
BENCHMARK(BM_EncodePng)->Arg(256)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond);

// Baseline: zlib level 1 over the unfiltered pixels, into a buffer sized once.
void BM_DeflateUnfilteredBaseline(benchmark::State& state) {
  const int side = static_cast<int>(state.range(0));
  const std::vector<uint8_t>& rgb = LandscapePixels(side);
  std::vector<Bytef> out(compressBound(static_cast<uLong>(rgb.size())));
  uLongf out_size = 0;
  for (auto _ : state) {
    out_size = static_cast<uLongf>(out.size());
    if (compress2(out.data(), &out_size, rgb.data(), static_cast<uLong>(rgb.size()), 1) != Z_OK) {
      state.SkipWithError("compress2 failed");
      return;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * rgb.size()));
  state.counters["png_bytes"] = static_cast<double>(out_size);
  state.counters["ratio"] = static_cast<double>(out_size) / static_cast<double>(rgb.size());
}
BENCHMARK(BM_DeflateUnfilteredBaseline)
    ->Arg(256)
    ->Arg(512)
    ->Arg(1024)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace anyai::bench

BENCHMARK_MAIN();
