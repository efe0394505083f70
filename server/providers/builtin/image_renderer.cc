#include "server/providers/builtin/image_renderer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/providers/builtin/png_encoder.h"

namespace anyai::server {
namespace {

// FNV-1a, 64-bit: stable across processes, unlike std::hash and absl::Hash.
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

class Fnv1a {
 public:
  void AddBytes(std::string_view bytes) {
    for (unsigned char c : bytes) {
      h_ = (h_ ^ c) * kFnvPrime;
    }
  }
  void AddU64(uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h_ = (h_ ^ ((v >> (8 * i)) & 0xff)) * kFnvPrime;
    }
  }
  // Length-prefixed, so that ("ab", "c") and ("a", "bc") hash apart.
  void AddField(std::string_view s) {
    AddU64(s.size());
    AddBytes(s);
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = kFnvOffset;
};

// splitmix64's finaliser: a bijection that spreads every input bit over the output.
uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// splitmix64: every draw the scene makes comes from here, in a fixed order.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() { return Mix64(state_ += 0x9e3779b97f4a7c15ULL); }
  // Uniform in [0, 1), 24 bits: exact in a float.
  float Unit() { return static_cast<float>(Next() >> 40) * (1.0f / 16777216.0f); }
  float Range(float lo, float hi) { return lo + (hi - lo) * Unit(); }
  int Below(int n) { return static_cast<int>(Next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

// sin(2*pi*turns) by range reduction and a degree-9 Taylor polynomial (error < 4e-6), so that
// the picture does not depend on the platform's libm.
float SinTurns(float turns) {
  float x = turns - std::floor(turns) - 0.5f;  // [-0.5, 0.5); sin(2*pi*turns) = -sin(2*pi*x)
  if (x > 0.25f) x = 0.5f - x;
  if (x < -0.25f) x = -0.5f - x;
  const float y = 6.28318530718f * x;  // [-pi/2, pi/2]
  const float y2 = y * y;
  const float s =
      y * (1.0f + y2 * (-1.0f / 6 + y2 * (1.0f / 120 + y2 * (-1.0f / 5040 + y2 / 362880))));
  return -s;
}

float Clamp01(float v) { return std::min(1.0f, std::max(0.0f, v)); }

float SmoothStep(float edge0, float edge1, float v) {
  const float t = Clamp01((v - edge0) / (edge1 - edge0));
  return t * t * (3.0f - 2.0f * t);
}

struct Rgb {
  float r = 0, g = 0, b = 0;
};

Rgb Mix(const Rgb& a, const Rgb& b, float t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}

Rgb Scale(const Rgb& a, float k) { return {a.r * k, a.g * k, a.b * k}; }

Rgb Add(const Rgb& a, const Rgb& b) { return {a.r + b.r, a.g + b.g, a.b + b.b}; }

struct Palette {
  const char* words[4];  // prompt words that choose this palette; nullptr-terminated
  Rgb zenith, horizon, sun, far_ridge, near_ridge, cloud;
  bool night;
};

// Hand-picked, so that every hashed picture is a pleasant one. Columns: zenith, horizon, sun,
// far ridge, near ridge, cloud.
// clang-format off
constexpr std::array<Palette, 6> kPalettes = {{
    {{"sunset", "dusk", "evening", nullptr},
     {0.16f, 0.14f, 0.38f}, {0.98f, 0.58f, 0.36f}, {1.00f, 0.86f, 0.60f},
     {0.58f, 0.40f, 0.54f}, {0.14f, 0.09f, 0.20f}, {1.00f, 0.70f, 0.60f}, false},
    {{"day", "noon", "summer", nullptr},
     {0.20f, 0.45f, 0.84f}, {0.74f, 0.87f, 0.97f}, {1.00f, 0.98f, 0.90f},
     {0.46f, 0.60f, 0.72f}, {0.16f, 0.36f, 0.22f}, {1.00f, 1.00f, 1.00f}, false},
    {{"dawn", "sunrise", "morning", nullptr},
     {0.36f, 0.50f, 0.78f}, {1.00f, 0.80f, 0.66f}, {1.00f, 0.95f, 0.82f},
     {0.64f, 0.60f, 0.74f}, {0.26f, 0.30f, 0.42f}, {1.00f, 0.90f, 0.88f}, false},
    {{"night", "moon", "star", nullptr},
     {0.02f, 0.03f, 0.10f}, {0.13f, 0.17f, 0.34f}, {0.92f, 0.94f, 1.00f},
     {0.11f, 0.14f, 0.26f}, {0.03f, 0.04f, 0.08f}, {0.30f, 0.32f, 0.46f}, true},
    {{"desert", "sand", "gold", nullptr},
     {0.28f, 0.54f, 0.80f}, {0.98f, 0.88f, 0.64f}, {1.00f, 0.96f, 0.78f},
     {0.86f, 0.63f, 0.44f}, {0.60f, 0.34f, 0.20f}, {1.00f, 0.96f, 0.90f}, false},
    {{"snow", "winter", "ice", nullptr},
     {0.10f, 0.32f, 0.44f}, {0.66f, 0.88f, 0.88f}, {0.96f, 1.00f, 0.96f},
     {0.54f, 0.72f, 0.78f}, {0.14f, 0.30f, 0.36f}, {0.92f, 0.98f, 1.00f}, false},
}};
// clang-format on

std::string Lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsLetter(char c) { return c >= 'a' && c <= 'z'; }

// Where `word` first begins a word of `text` ("star" in "starry", not "ice" in "nice"), or npos.
size_t FindWordStart(const std::string& text, std::string_view word) {
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    if (at == 0 || !IsLetter(text[at - 1])) return at;
  }
  return std::string::npos;
}

// The palette the prompt names, if any (the earliest mention wins), else a hashed one.
const Palette& ChoosePalette(std::string_view prompt, SplitMix64& rng) {
  const std::string lower = Lowercase(prompt);
  const Palette* named = nullptr;
  size_t earliest = std::string::npos;
  for (const Palette& p : kPalettes) {
    for (const char* const* w = p.words; *w != nullptr; ++w) {
      const size_t at = FindWordStart(lower, *w);
      if (at < earliest) {
        earliest = at;
        named = &p;
      }
    }
  }
  // Drawn even when a word matched, so that the draws after it do not depend on the match.
  const int hashed = rng.Below(static_cast<int>(kPalettes.size()));
  return named != nullptr ? *named : kPalettes[hashed];
}

Rgb Jitter(const Rgb& c, SplitMix64& rng, float amount) {
  return {Clamp01(c.r + rng.Range(-amount, amount)), Clamp01(c.g + rng.Range(-amount, amount)),
          Clamp01(c.b + rng.Range(-amount, amount))};
}

struct Ridge {
  static constexpr int kMaxOctaves = 4;
  float base;       // v of the ridge's mean line (0 top, 1 bottom)
  float amplitude;  // how far above the mean line peaks rise, in v
  bool jagged;      // mountains (folded sines) rather than rolling hills
  int octaves;
  std::array<float, kMaxOctaves> frequency, phase, weight;
  Rgb color;
  float mist;  // how much the valley floor fades into the horizon colour
};

struct Cloud {
  static constexpr int kPuffs = 3;
  std::array<float, kPuffs> cx, cy, rx, ry;  // in x (aspect-scaled) and v units
  float opacity;
};

struct Scene {
  Rgb zenith, horizon, sun_color, cloud_color;
  bool night;
  float horizon_v;
  float sun_x, sun_v, sun_radius, glow;
  std::vector<Ridge> ridges;  // far to near
  std::vector<Cloud> clouds;
  uint64_t star_salt;
};

Scene BuildScene(const RenderRequest& req, float aspect) {
  Fnv1a fnv;
  fnv.AddField(req.prompt);
  fnv.AddField(req.negative_prompt);
  fnv.AddField(req.model);
  fnv.AddU64(static_cast<uint64_t>(req.seed));
  fnv.AddU64(static_cast<uint64_t>(static_cast<int64_t>(req.steps)));
  SplitMix64 rng(Mix64(fnv.value()));

  const Palette& palette = ChoosePalette(req.prompt, rng);
  Scene s;
  s.night = palette.night;
  s.zenith = Jitter(palette.zenith, rng, 0.04f);
  s.horizon = Jitter(palette.horizon, rng, 0.04f);
  s.sun_color = palette.sun;
  s.cloud_color = Jitter(palette.cloud, rng, 0.03f);
  s.horizon_v = rng.Range(0.52f, 0.68f);
  s.sun_x = rng.Range(0.2f, 0.8f) * aspect;
  s.sun_v = rng.Range(0.16f, s.horizon_v - 0.06f);
  s.sun_radius = s.night ? rng.Range(0.035f, 0.05f) : rng.Range(0.045f, 0.075f);
  s.glow = s.night ? 0.12f : rng.Range(0.35f, 0.6f);
  s.star_salt = rng.Next();

  const int octaves = 2 + std::clamp(req.steps, 0, 50) / 25;
  const int ridge_count = 3 + rng.Below(3);
  const Rgb far = Jitter(palette.far_ridge, rng, 0.03f);
  const Rgb near = Jitter(palette.near_ridge, rng, 0.03f);
  for (int i = 0; i < ridge_count; ++i) {
    const float t = static_cast<float>(i) / static_cast<float>(ridge_count - 1);  // 0 far, 1 near
    Ridge r;
    r.base = s.horizon_v + t * (0.9f - s.horizon_v) + rng.Range(-0.02f, 0.02f);
    r.amplitude = (1.0f - t) * rng.Range(0.14f, 0.24f) + t * rng.Range(0.05f, 0.09f);
    r.jagged = i == 0 || (i == 1 && rng.Unit() < 0.5f);
    r.octaves = octaves;
    float w = 1.0f;
    // Cycles per picture height, so that a wide picture shows more hills, not wider ones.
    float f = rng.Range(0.8f, 1.6f);
    for (int k = 0; k < Ridge::kMaxOctaves; ++k) {
      r.frequency[k] = f * aspect;  // cycles per picture width
      r.phase[k] = rng.Unit();
      r.weight[k] = w;
      f *= rng.Range(1.9f, 2.3f);
      w *= 0.45f;
    }
    // Distance fades ridges into the sky (aerial perspective).
    r.color = Mix(Mix(far, near, t), s.horizon, (1.0f - t) * 0.35f);
    r.mist = (1.0f - t) * 0.55f;
    s.ridges.push_back(r);
  }

  const int cloud_count = 2 + rng.Below(4);
  for (int i = 0; i < cloud_count; ++i) {
    Cloud c;
    const float x = rng.Range(0.0f, aspect);
    const float v = rng.Range(0.08f, s.horizon_v - 0.12f);
    const float size = rng.Range(0.06f, 0.14f);
    for (int k = 0; k < Cloud::kPuffs; ++k) {
      c.cx[k] = x + rng.Range(-1.2f, 1.2f) * size;
      c.cy[k] = v + rng.Range(-0.25f, 0.25f) * size;
      c.rx[k] = size * rng.Range(1.4f, 2.4f);
      c.ry[k] = size * rng.Range(0.35f, 0.6f);
    }
    c.opacity = s.night ? rng.Range(0.2f, 0.35f) : rng.Range(0.45f, 0.75f);
    s.clouds.push_back(c);
  }
  return s;
}

// Ridge height (v of its top edge) at horizontal position u in [0, 1).
float RidgeTop(const Ridge& r, float u) {
  float sum = 0.0f;
  float norm = 0.0f;
  for (int k = 0; k < r.octaves; ++k) {
    float s = SinTurns(r.frequency[k] * u + r.phase[k]);
    if (r.jagged) s = 1.0f - 2.0f * std::fabs(s);  // folded: sharp peaks
    sum += r.weight[k] * s;
    norm += r.weight[k];
  }
  const float h01 = 0.5f + 0.5f * sum / norm;  // [0, 1]
  return r.base - r.amplitude * h01;
}

// A ridge's colour at height v. Mist lies in the valleys: it depends on height, not on the
// distance below the ridge line, or every peak would cast a pale streak down its column.
Rgb RidgeColor(const Scene& s, const Ridge& r, float v) {
  return Mix(r.color, s.horizon, r.mist * SmoothStep(r.base - r.amplitude, r.base + 0.12f, v));
}

// A 4x4 Bayer matrix: sub-LSB dither so that wide gradients do not band.
constexpr std::array<std::array<float, 4>, 4> kBayer = {{
    {0, 8, 2, 10},
    {12, 4, 14, 6},
    {3, 11, 1, 9},
    {15, 7, 13, 5},
}};

uint8_t ToByte(float v, float dither) {
  return static_cast<uint8_t>(std::clamp(v * 255.0f + dither, 0.0f, 255.0f));
}

std::vector<uint8_t> Paint(const Scene& s, int width, int height) {
  const float inv_h = 1.0f / static_cast<float>(height);
  const int ridge_count = static_cast<int>(s.ridges.size());

  // Per column: each ridge's top edge, and the factor that turns a vertical distance in pixels
  // into the distance to the edge, for antialiasing slopes as well as flats.
  std::vector<float> top(static_cast<size_t>(ridge_count) * width);
  std::vector<float> edge_scale(top.size());
  for (int i = 0; i < ridge_count; ++i) {
    float* t = &top[static_cast<size_t>(i) * width];
    for (int x = 0; x < width; ++x) {
      t[x] = RidgeTop(s.ridges[i], (static_cast<float>(x) + 0.5f) / static_cast<float>(width));
    }
    float* e = &edge_scale[static_cast<size_t>(i) * width];
    for (int x = 0; x < width; ++x) {
      const float left = t[std::max(0, x - 1)];
      const float right = t[std::min(width - 1, x + 1)];
      const float slope_px = (right - left) * 0.5f * static_cast<float>(height);
      e[x] = static_cast<float>(height) / std::sqrt(1.0f + slope_px * slope_px);
    }
  }

  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  const float sun_r2 = s.sun_radius * s.sun_radius;
  for (int y = 0; y < height; ++y) {
    const float v = (static_cast<float>(y) + 0.5f) * inv_h;
    const float sky_t = Clamp01(v / s.horizon_v);
    const Rgb sky_row = Mix(s.zenith, s.horizon, sky_t * sky_t * (3.0f - 2.0f * sky_t));
    const float star_fade = 1.0f - sky_t;
    const float dv_sun = v - s.sun_v;
    uint8_t* out = &rgb[static_cast<size_t>(y) * width * 3];
    for (int x = 0; x < width; ++x) {
      const float px = (static_cast<float>(x) + 0.5f) * inv_h;  // aspect-scaled x

      // The nearest ridge that covers this pixel completely hides everything behind it.
      int covering = -1;
      for (int i = ridge_count - 1; i >= 0; --i) {
        const size_t at = static_cast<size_t>(i) * width + x;
        if ((v - top[at]) * edge_scale[at] >= 0.5f) {
          covering = i;
          break;
        }
      }
      Rgb c;
      if (covering < 0) {
        c = sky_row;
        const float dx = px - s.sun_x;
        const float d2 = dx * dx + dv_sun * dv_sun;
        const float d = std::sqrt(d2);
        c = Add(c, Scale(s.sun_color, s.glow * sun_r2 / (d2 + sun_r2 * 4.0f)));
        const float disc = Clamp01((s.sun_radius - d) * static_cast<float>(height) + 0.5f);
        c = Mix(c, s.sun_color, disc);
        if (s.night && disc == 0.0f) {
          const uint64_t h =
              Mix64(s.star_salt ^ ((static_cast<uint64_t>(y) << 32) | static_cast<uint64_t>(x)));
          if ((h & 0x1ff) == 0) {
            const float twinkle = static_cast<float>((h >> 9) & 0xff) / 255.0f;
            c = Mix(c, {1.0f, 1.0f, 0.95f}, star_fade * (0.4f + 0.6f * twinkle));
          }
        }
        for (const Cloud& cloud : s.clouds) {
          float cover = 0.0f;
          float below = 0.0f;  // -1 at the top of the densest puff, +1 at its bottom
          for (int k = 0; k < Cloud::kPuffs; ++k) {
            const float qy = (v - cloud.cy[k]) / cloud.ry[k];
            if (qy * qy >= 1.0f) continue;
            const float qx = (px - cloud.cx[k]) / cloud.rx[k];
            const float q = qx * qx + qy * qy;
            if (q < 1.0f && (1.0f - q) * (1.0f - q) > cover) {
              cover = (1.0f - q) * (1.0f - q);
              below = qy;
            }
          }
          if (cover > 0.0f) {
            // Lit from above: the underside takes on the horizon's colour.
            const Rgb shade = Mix(s.cloud_color, s.horizon, 0.45f * Clamp01(0.5f + 0.5f * below));
            c = Mix(c, shade, Clamp01(cover * 1.6f) * cloud.opacity);
          }
        }
      } else {
        c = RidgeColor(s, s.ridges[covering], v);
      }
      // Ridges in front that cover this pixel only in part: their antialiased edge.
      for (int i = covering + 1; i < ridge_count; ++i) {
        const size_t at = static_cast<size_t>(i) * width + x;
        const float cover = Clamp01((v - top[at]) * edge_scale[at] + 0.5f);
        if (cover > 0.0f) c = Mix(c, RidgeColor(s, s.ridges[i], v), cover);
      }

      const float dither = (kBayer[y & 3][x & 3] + 0.5f) / 16.0f;
      out[3 * x + 0] = ToByte(c.r, dither);
      out[3 * x + 1] = ToByte(c.g, dither);
      out[3 * x + 2] = ToByte(c.b, dither);
    }
  }
  return rgb;
}

}  // namespace

absl::StatusOr<std::string> RenderPng(const RenderRequest& request) {
  if (request.width < 1 || request.width > kMaxPngSide || request.height < 1 ||
      request.height > kMaxPngSide) {
    return absl::InvalidArgumentError("image size " + std::to_string(request.width) + "x" +
                                      std::to_string(request.height) + " is outside 1.." +
                                      std::to_string(kMaxPngSide) + " per side");
  }
  const float aspect = static_cast<float>(request.width) / static_cast<float>(request.height);
  const Scene scene = BuildScene(request, aspect);
  const std::vector<uint8_t> rgb = Paint(scene, request.width, request.height);
  return EncodePng(request.width, request.height, rgb);
}

}  // namespace anyai::server
