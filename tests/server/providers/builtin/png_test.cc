// Tests for server/providers/builtin/png_encoder.cc and server/providers/builtin/image_renderer.cc.
// Every PNG is decoded back here by an independent reader (zlib's inflate plus the five PNG
// unfilters), which checks the signature, the chunk layout, every CRC and the IHDR fields before
// comparing pixels; some are also read back by libpng's own decoder.
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/providers/builtin/image_renderer.h"
#include "server/providers/builtin/png_encoder.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::testing::Gt;
using ::testing::HasSubstr;
using ::testing::Lt;
using ::testing::Ne;

struct DecodedPng {
  uint32_t width = 0;
  uint32_t height = 0;
  int bit_depth = 0;
  int colour_type = 0;
  int compression = 0;
  int filter_method = 0;
  int interlace = 0;
  std::vector<uint8_t> row_filters;  // one per row
  std::vector<uint8_t> rgb;
};

uint32_t ReadBigEndian32(std::string_view s, size_t at) {
  return static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

absl::Status Bad(std::string message) { return absl::DataLossError(message); }

absl::StatusOr<std::vector<uint8_t>> Inflate(const std::string& compressed, size_t expected) {
  std::vector<uint8_t> out(expected + 1);  // one spare byte to catch a too-long stream
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) return Bad("inflateInit failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  zs.avail_in = static_cast<uInt>(compressed.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  const size_t produced = zs.total_out;
  const uInt left_in = zs.avail_in;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) return Bad("zlib stream did not end cleanly: " + std::to_string(rc));
  if (left_in != 0) return Bad("bytes after the end of the zlib stream");
  if (produced != expected) {
    return Bad("inflated " + std::to_string(produced) + " bytes, expected " +
               std::to_string(expected));
  }
  out.resize(produced);
  return out;
}

int Paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

// A strict reader for what EncodePng promises: 8-bit RGB, not interlaced.
absl::StatusOr<DecodedPng> DecodePng(std::string_view png) {
  constexpr std::string_view kSignature("\x89PNG\r\n\x1a\n", 8);
  if (png.substr(0, 8) != kSignature) return Bad("bad signature");

  DecodedPng out;
  std::string idat;
  std::vector<std::string> types;
  size_t at = 8;
  while (at < png.size()) {
    if (png.size() - at < 12) return Bad("truncated chunk header");
    const uint32_t length = ReadBigEndian32(png, at);
    if (png.size() - at - 12 < length) return Bad("chunk longer than the file");
    const std::string type(png.substr(at + 4, 4));
    const std::string_view data = png.substr(at + 8, length);
    const uint32_t stored_crc = ReadBigEndian32(png, at + 8 + length);
    const uint32_t crc = static_cast<uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(png.data() + at + 4), 4 + length));
    if (crc != stored_crc) return Bad("CRC mismatch in " + type);
    if (!types.empty() && types.back() == "IEND") return Bad("chunk after IEND");
    if (type == "IDAT" && !types.empty() && types.back() != "IDAT" &&
        std::find(types.begin(), types.end(), "IDAT") != types.end()) {
      return Bad("IDAT chunks not consecutive");
    }
    types.push_back(type);
    if (type == "IHDR") {
      if (types.size() != 1) return Bad("IHDR is not the first chunk");
      if (length != 13) return Bad("IHDR length " + std::to_string(length));
      out.width = ReadBigEndian32(data, 0);
      out.height = ReadBigEndian32(data, 4);
      out.bit_depth = static_cast<uint8_t>(data[8]);
      out.colour_type = static_cast<uint8_t>(data[9]);
      out.compression = static_cast<uint8_t>(data[10]);
      out.filter_method = static_cast<uint8_t>(data[11]);
      out.interlace = static_cast<uint8_t>(data[12]);
    } else if (type == "IDAT") {
      idat.append(data);
    } else if (type == "IEND") {
      if (length != 0) return Bad("IEND has data");
    } else {
      return Bad("unexpected chunk " + type);
    }
    at += 12 + length;
  }
  if (types.empty() || types.front() != "IHDR") return Bad("no IHDR");
  if (types.back() != "IEND") return Bad("does not end with IEND");
  if (idat.empty()) return Bad("no IDAT");
  if (out.width == 0 || out.height == 0) return Bad("zero size");
  if (out.bit_depth != 8 || out.colour_type != 2 || out.compression != 0 ||
      out.filter_method != 0 || out.interlace != 0) {
    return Bad("not 8-bit non-interlaced RGB");
  }

  const size_t stride = static_cast<size_t>(out.width) * 3;
  absl::StatusOr<std::vector<uint8_t>> raw = Inflate(idat, (stride + 1) * out.height);
  if (!raw.ok()) return raw.status();

  out.rgb.resize(stride * out.height);
  for (size_t y = 0; y < out.height; ++y) {
    const uint8_t filter = (*raw)[y * (stride + 1)];
    if (filter > 4) return Bad("filter type " + std::to_string(filter));
    out.row_filters.push_back(filter);
    const uint8_t* in = raw->data() + y * (stride + 1) + 1;
    uint8_t* row = out.rgb.data() + y * stride;
    const uint8_t* up = y == 0 ? nullptr : row - stride;
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= 3 ? row[i - 3] : 0;
      const int b = up != nullptr ? up[i] : 0;
      const int c = (up != nullptr && i >= 3) ? up[i - 3] : 0;
      int predictor = 0;
      switch (filter) {
        case 0:
          predictor = 0;
          break;
        case 1:
          predictor = a;
          break;
        case 2:
          predictor = b;
          break;
        case 3:
          predictor = (a + b) / 2;
          break;
        case 4:
          predictor = Paeth(a, b, c);
          break;
      }
      row[i] = static_cast<uint8_t>(in[i] + predictor);
    }
  }
  return out;
}

// Deterministic test pictures: a mix of smooth gradients and noise.
std::vector<uint8_t> TestPicture(int width, int height) {
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  uint32_t lcg = 12345;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* p = &rgb[(static_cast<size_t>(y) * width + x) * 3];
      lcg = lcg * 1664525u + 1013904223u;
      const bool noisy = (y / 8 + x / 64) % 3 == 0;
      p[0] = noisy ? static_cast<uint8_t>(lcg >> 24) : static_cast<uint8_t>(x * 255 / width);
      p[1] = noisy ? static_cast<uint8_t>(lcg >> 16) : static_cast<uint8_t>(y * 255 / height);
      p[2] = static_cast<uint8_t>((x + y) & 0xff);
    }
  }
  return rgb;
}

void ExpectRoundTrip(int width, int height) {
  const std::vector<uint8_t> rgb = TestPicture(width, height);
  absl::StatusOr<std::string> png = EncodePng(width, height, rgb);
  ASSERT_THAT(png, IsOk());
  absl::StatusOr<DecodedPng> decoded = DecodePng(*png);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->width, static_cast<uint32_t>(width));
  EXPECT_EQ(decoded->height, static_cast<uint32_t>(height));
  EXPECT_EQ(decoded->row_filters.size(), static_cast<size_t>(height));
  EXPECT_TRUE(decoded->rgb == rgb) << "pixels differ after decoding";
}

TEST(EncodePngTest, RoundTripsOnePixel) {
  const std::vector<uint8_t> rgb = {200, 100, 50};
  absl::StatusOr<std::string> png = EncodePng(1, 1, rgb);
  ASSERT_THAT(png, IsOk());
  absl::StatusOr<DecodedPng> decoded = DecodePng(*png);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->width, 1u);
  EXPECT_EQ(decoded->height, 1u);
  EXPECT_EQ(decoded->rgb, rgb);
}

TEST(EncodePngTest, RoundTripsAnOddSize) { ExpectRoundTrip(17, 5); }

TEST(EncodePngTest, RoundTripsALargePicture) { ExpectRoundTrip(1024, 768); }

TEST(EncodePngTest, RoundTripsTheLargestSide) {
  ExpectRoundTrip(kMaxPngSide, 2);
  ExpectRoundTrip(3, kMaxPngSide);
}

TEST(EncodePngTest, FiltersSmoothRowsAndCompressesThem) {
  constexpr int kWidth = 256, kHeight = 256;
  std::vector<uint8_t> rgb(kWidth * kHeight * 3);
  for (int y = 0; y < kHeight; ++y) {
    for (int x = 0; x < kWidth; ++x) {
      uint8_t* p = &rgb[(y * kWidth + x) * 3];
      p[0] = static_cast<uint8_t>(x);
      p[1] = static_cast<uint8_t>(y);
      p[2] = static_cast<uint8_t>((x + y) / 2);
    }
  }
  absl::StatusOr<std::string> png = EncodePng(kWidth, kHeight, rgb);
  ASSERT_THAT(png, IsOk());
  absl::StatusOr<DecodedPng> decoded = DecodePng(*png);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->rgb, rgb);
  EXPECT_THAT(std::set<uint8_t>(decoded->row_filters.begin(), decoded->row_filters.end()),
              ::testing::Contains(Ne(0)));
  EXPECT_THAT(png->size(), Lt(rgb.size() / 20));
}

// The Sub filter on every row: measured faster and smaller than the adaptive choice on the
// renderer's pictures (png_encoder.cc).
TEST(EncodePngTest, FiltersEveryRowWithSub) {
  const std::vector<uint8_t> rgb = TestPicture(300, 200);
  absl::StatusOr<std::string> png = EncodePng(300, 200, rgb);
  ASSERT_THAT(png, IsOk());
  absl::StatusOr<DecodedPng> decoded = DecodePng(*png);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->rgb, rgb);
  EXPECT_EQ(std::set<uint8_t>(decoded->row_filters.begin(), decoded->row_filters.end()),
            std::set<uint8_t>{1});
}

// libpng's simplified reader, an implementation independent of the one above, reads the same
// pixels back.
TEST(EncodePngTest, IsReadBackByLibpng) {
  constexpr int kWidth = 123, kHeight = 77;
  const std::vector<uint8_t> rgb = TestPicture(kWidth, kHeight);
  absl::StatusOr<std::string> png = EncodePng(kWidth, kHeight, rgb);
  ASSERT_THAT(png, IsOk());

  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  ASSERT_TRUE(png_image_begin_read_from_memory(&image, png->data(), png->size())) << image.message;
  EXPECT_EQ(image.width, static_cast<png_uint_32>(kWidth));
  EXPECT_EQ(image.height, static_cast<png_uint_32>(kHeight));
  EXPECT_EQ(image.format, static_cast<png_uint_32>(PNG_FORMAT_RGB));
  image.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> read(PNG_IMAGE_SIZE(image));
  ASSERT_TRUE(png_image_finish_read(&image, /*background=*/nullptr, read.data(), /*row_stride=*/0,
                                    /*colormap=*/nullptr))
      << image.message;
  EXPECT_TRUE(read == rgb) << "libpng reads other pixels";
}

TEST(EncodePngTest, RefusesSidesOutOfRange) {
  const std::vector<uint8_t> none;
  const std::vector<uint8_t> one_pixel(3);
  EXPECT_THAT(EncodePng(0, 1, none),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0x1")));
  EXPECT_THAT(EncodePng(1, 0, none),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1x0")));
  EXPECT_THAT(EncodePng(-1, 1, one_pixel),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("-1x1")));
  EXPECT_THAT(EncodePng(1, -5, one_pixel),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1x-5")));
  const std::vector<uint8_t> wide((kMaxPngSide + 1) * 3);
  EXPECT_THAT(EncodePng(kMaxPngSide + 1, 1, wide),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("4097x1")));
  EXPECT_THAT(EncodePng(1, kMaxPngSide + 1, wide),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1x4097")));
}

TEST(EncodePngTest, RefusesPixelsOfTheWrongLength) {
  const std::vector<uint8_t> short_by_one(17 * 5 * 3 - 1);
  const std::vector<uint8_t> long_by_one(17 * 5 * 3 + 1);
  const std::vector<uint8_t> rgba(17 * 5 * 4);
  for (const auto* pixels : {&short_by_one, &long_by_one, &rgba}) {
    EXPECT_THAT(EncodePng(17, 5, *pixels),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs 255")));
  }
}

RenderRequest SampleRequest() {
  RenderRequest r;
  r.prompt = "a quiet valley at sunset";
  r.negative_prompt = "blurry";
  r.width = 96;
  r.height = 64;
  r.steps = 30;
  r.seed = 42;
  r.model = "flux";
  return r;
}

DecodedPng RenderAndDecode(const RenderRequest& request) {
  absl::StatusOr<std::string> png = RenderPng(request);
  EXPECT_THAT(png, IsOk());
  if (!png.ok()) return {};
  absl::StatusOr<DecodedPng> decoded = DecodePng(*png);
  EXPECT_THAT(decoded, IsOk());
  return decoded.ok() ? *decoded : DecodedPng{};
}

TEST(RenderPngTest, MakesAValidPngOfExactlyTheRequestedSize) {
  for (const auto& [w, h] : std::vector<std::pair<int, int>>{{1, 1}, {17, 5}, {1024, 768}}) {
    RenderRequest r = SampleRequest();
    r.width = w;
    r.height = h;
    const DecodedPng decoded = RenderAndDecode(r);
    EXPECT_EQ(decoded.width, static_cast<uint32_t>(w));
    EXPECT_EQ(decoded.height, static_cast<uint32_t>(h));
    EXPECT_EQ(decoded.rgb.size(), static_cast<size_t>(w) * h * 3);
  }
}

TEST(RenderPngTest, GivesTheSameBytesForTheSameRequest) {
  absl::StatusOr<std::string> first = RenderPng(SampleRequest());
  absl::StatusOr<std::string> second = RenderPng(SampleRequest());
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_TRUE(*first == *second);
}

TEST(RenderPngTest, ChangesWithEveryField) {
  const absl::StatusOr<std::string> base = RenderPng(SampleRequest());
  ASSERT_THAT(base, IsOk());
  std::vector<RenderRequest> variants(5, SampleRequest());
  variants[0].seed = 43;
  variants[1].prompt = "a quiet valley at sunset.";
  variants[2].negative_prompt = "";
  variants[3].model = "sdxl";
  variants[4].steps = 31;
  for (const RenderRequest& r : variants) {
    absl::StatusOr<std::string> png = RenderPng(r);
    ASSERT_THAT(png, IsOk());
    EXPECT_TRUE(*png != *base) << "seed " << r.seed << ", prompt '" << r.prompt << "', model "
                               << r.model << ", steps " << r.steps;
  }
}

// The same request must give the same picture in every process and on every run, which a
// single process cannot show by comparing two renders: pin one picture's pixels. (The pixels,
// not the PNG bytes, which also depend on the zlib build.) If the painting is changed on
// purpose, update the value.
TEST(RenderPngTest, PaintsThePinnedPictureForAPinnedRequest) {
  const DecodedPng decoded = RenderAndDecode(SampleRequest());
  const uint32_t crc =
      static_cast<uint32_t>(crc32(0, decoded.rgb.data(), static_cast<uInt>(decoded.rgb.size())));
  EXPECT_EQ(crc, 0x4528e374u) << std::hex << "pixel CRC-32 0x" << crc;
}

TEST(RenderPngTest, PaintsAPictureNotAFlatFill) {
  RenderRequest r = SampleRequest();
  r.width = 128;
  r.height = 128;
  const DecodedPng decoded = RenderAndDecode(r);
  std::set<uint32_t> colours;
  for (size_t i = 0; i + 2 < decoded.rgb.size(); i += 3) {
    colours.insert(decoded.rgb[i] << 16 | decoded.rgb[i + 1] << 8 | decoded.rgb[i + 2]);
  }
  EXPECT_THAT(colours.size(), Gt(200u));
  // Top rows (sky) and bottom rows (near hills) differ.
  const size_t row = 128 * 3;
  EXPECT_TRUE(std::vector<uint8_t>(decoded.rgb.begin(), decoded.rgb.begin() + row) !=
              std::vector<uint8_t>(decoded.rgb.end() - row, decoded.rgb.end()));
}

double MeanBrightness(const DecodedPng& p) {
  double sum = 0;
  for (uint8_t v : p.rgb) sum += v;
  return p.rgb.empty() ? 0 : sum / static_cast<double>(p.rgb.size());
}

TEST(RenderPngTest, TakesItsPaletteFromWordsInThePrompt) {
  RenderRequest night = SampleRequest();
  night.prompt = "Mountains under a starry NIGHT sky";
  RenderRequest day = SampleRequest();
  day.prompt = "mountains on a summer day";
  EXPECT_THAT(MeanBrightness(RenderAndDecode(night)),
              Lt(0.5 * MeanBrightness(RenderAndDecode(day))));
}

TEST(RenderPngTest, RefusesSidesOutOfRange) {
  for (const auto& [w, h] : std::vector<std::pair<int, int>>{
           {0, 64}, {64, 0}, {-3, 64}, {64, -3}, {kMaxPngSide + 1, 64}, {64, kMaxPngSide + 1}}) {
    RenderRequest r = SampleRequest();
    r.width = w;
    r.height = h;
    EXPECT_THAT(RenderPng(r), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr(std::to_string(w) + "x" + std::to_string(h))));
  }
}

TEST(RenderPngTest, AcceptsTheLargestSide) {
  RenderRequest r = SampleRequest();
  r.width = kMaxPngSide;
  r.height = 8;
  const DecodedPng decoded = RenderAndDecode(r);
  EXPECT_EQ(decoded.width, static_cast<uint32_t>(kMaxPngSide));
  EXPECT_EQ(decoded.height, 8u);
}

}  // namespace
}  // namespace anyai::server
