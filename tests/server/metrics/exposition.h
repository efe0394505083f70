// Reading Metrics::Render() back in tests: the value of one series of the text exposition
// format, found by its family name and its complete label set, so that a check names exactly
// one sample and a missing or duplicated series fails as loudly as a wrong value.
#ifndef ANYAI_TESTS_SERVER_METRICS_EXPOSITION_H_
#define ANYAI_TESTS_SERVER_METRICS_EXPOSITION_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace anyai::server::testing {

using Labels = std::map<std::string, std::string>;

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

// Every sample line of `text` (comments skipped).
inline std::vector<Sample> Samples(absl::string_view text) {
  std::vector<Sample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = std::string(line.substr(0, i));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        std::string key(line.substr(i, eq - i));
        std::string value;
        for (i = eq + 2; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\') ++i;  // an escaped quote, backslash or newline
          value += line[i];
        }
        s.labels[std::move(key)] = std::move(value);
        ++i;  // the closing quote
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // the closing brace
    }
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(line.substr(i)), &s.value)) continue;
    out.push_back(std::move(s));
  }
  return out;
}

// The samples of family `name` whose label set is exactly `labels`.
inline std::vector<double> ValuesOf(absl::string_view text, absl::string_view name,
                                    const Labels& labels) {
  std::vector<double> out;
  for (const Sample& s : Samples(text)) {
    if (s.name == name && s.labels == labels) out.push_back(s.value);
  }
  return out;
}

// The value of the one sample `name{labels}`, or nullopt when there is none or several.
inline std::optional<double> ValueOf(absl::string_view text, absl::string_view name,
                                     const Labels& labels) {
  std::vector<double> v = ValuesOf(text, name, labels);
  if (v.size() != 1) return std::nullopt;
  return v[0];
}

// Every label name of every sample.
inline std::set<std::string> LabelNames(absl::string_view text) {
  std::set<std::string> out;
  for (const Sample& s : Samples(text)) {
    for (const auto& [k, v] : s.labels) out.insert(k);
  }
  return out;
}

// Checks that `text` has exactly one sample `name{labels}` and that it equals `want`.
inline void ExpectSample(absl::string_view text, absl::string_view name, const Labels& labels,
                         double want) {
  std::vector<double> v = ValuesOf(text, name, labels);
  ASSERT_EQ(v.size(), 1u) << "samples of " << name << " with the labels asked";
  EXPECT_EQ(v[0], want) << name;
}

}  // namespace anyai::server::testing

#endif  // ANYAI_TESTS_SERVER_METRICS_EXPOSITION_H_
