#include "server/providers/builtin/png_encoder.h"

#include <png.h>
#include <zlib.h>

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

namespace anyai::server {
namespace {

constexpr int kBytesPerPixel = 3;
// Speed over size: on rendered 1024x1024 pictures, level 1 deflates about 3x faster than the
// default level 6 for files about 1.6x larger; Z_RLE was both slower and larger (the renderer's
// dither defeats run lengths).
constexpr int kDeflateLevel = 1;
// libpng's default for filtered rows is Z_FILTERED; zlib's level-1 path ignores the strategy,
// so this only states the setting: the plain one.
constexpr int kDeflateStrategy = Z_DEFAULT_STRATEGY;
// Every row with the Sub filter (each byte minus the one a pixel to its left). On the
// renderer's pictures (every palette, 256 to 1024 pixels a side) it gives files 8-19% smaller
// than PNG's adaptive choice among all five filters (PNG_ALL_FILTERS, the minimum sum of
// absolute differences per row, which the renderer's dithered rows mislead), and libpng
// encodes with it in half the time, since it then runs one filter per row, not five: the
// adaptive choice made libpng 1.5x slower than the hand-written encoder it replaced, Sub makes
// it 1.3-1.5x faster (bench/RESULTS.md).
constexpr int kRowFilters = PNG_FILTER_SUB;

// What libpng's callbacks share with EncodePng. libpng reaches it through its io pointer and
// error pointer. `error` is a fixed array so that reporting an error allocates nothing.
struct PngSink {
  std::string* out;
  char error[128];
};

void WriteToSink(png_structp png, png_bytep data, size_t size) {
  auto* sink = static_cast<PngSink*>(png_get_io_ptr(png));
  bool appended = true;
  // An exception must not unwind through libpng's C frames: turn it into a libpng error.
  try {
    sink->out->append(reinterpret_cast<const char*>(data), size);
  } catch (...) {
    appended = false;
  }
  if (!appended) png_error(png, "out of memory for the PNG output");
}

void FlushNothing(png_structp) {}

[[noreturn]] void RecordErrorAndJump(png_structp png, png_const_charp message) {
  auto* sink = static_cast<PngSink*>(png_get_error_ptr(png));
  std::strncpy(sink->error, message, sizeof(sink->error) - 1);
  sink->error[sizeof(sink->error) - 1] = '\0';
  png_longjmp(png, 1);
}

void IgnoreWarning(png_structp, png_const_charp) {}

// Writes the whole PNG through `png`'s write callback. Returns false, with the message in the
// sink, when libpng reports an error. libpng reports errors by longjmp to the setjmp below, so
// this frame (and every frame libpng jumps over) holds only trivially destructible objects.
bool WritePng(png_structp png, png_infop info, int width, int height, const uint8_t* rgb) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height),
               /*bit_depth=*/8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_filter(png, PNG_FILTER_TYPE_BASE, kRowFilters);
  png_set_compression_level(png, kDeflateLevel);
  png_set_compression_strategy(png, kDeflateStrategy);
  png_write_info(png, info);
  const size_t stride = static_cast<size_t>(width) * kBytesPerPixel;
  for (int y = 0; y < height; ++y) png_write_row(png, rgb + stride * static_cast<size_t>(y));
  png_write_end(png, nullptr);
  return true;
}

}  // namespace

absl::StatusOr<std::string> EncodePng(int width, int height, absl::Span<const uint8_t> rgb) {
  if (width < 1 || width > kMaxPngSide || height < 1 || height > kMaxPngSide) {
    return absl::InvalidArgumentError(
        absl::StrCat("PNG size ", width, "x", height, " is outside 1..", kMaxPngSide, " per side"));
  }
  const size_t expected = static_cast<size_t>(width) * height * kBytesPerPixel;
  if (rgb.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("PNG pixels: got ", rgb.size(), " bytes, a ",
                                                   width, "x", height, " RGB picture needs ",
                                                   expected));
  }

  std::string out;
  out.reserve(64 + expected / 4);
  PngSink sink{&out, {}};
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, RecordErrorAndJump, IgnoreWarning);
  if (png == nullptr) return absl::InternalError("PNG encoder: png_create_write_struct failed");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return absl::InternalError("PNG encoder: png_create_info_struct failed");
  }
  png_set_write_fn(png, &sink, WriteToSink, FlushNothing);
  const bool written = WritePng(png, info, width, height, rgb.data());
  png_destroy_write_struct(&png, &info);
  if (!written) return absl::InternalError(absl::StrCat("PNG encoder: ", sink.error));
  return out;
}

}  // namespace anyai::server
