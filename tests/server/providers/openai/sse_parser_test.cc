// Tests for server/providers/openai/sse_parser.cc: events come out whole and in order however the
// bytes are cut, with every line ending the format allows.
#include "server/providers/openai/sse_parser.h"

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace anyai::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Every event's data, feeding `stream` in pieces of `piece` bytes.
std::vector<std::string> Parse(absl::string_view stream, size_t piece) {
  SseParser parser;
  std::vector<std::string> events;
  for (size_t i = 0; i < stream.size(); i += piece) {
    EXPECT_TRUE(parser.Feed(stream.substr(i, piece), [&](absl::string_view data) {
      events.emplace_back(data);
      return true;
    }));
  }
  return events;
}

TEST(SseParserTest, DeliversEachEventWhateverTheCutsBetweenPieces) {
  const std::string stream =
      "data: {\"a\":1}\n\n"
      ": keep-alive\n\n"
      "data: {\"b\":2}\r\n\r\n"
      "data: {\"c\":3}\r\r"
      "data: [DONE]\n\n";
  for (size_t piece : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, stream.size()}) {
    EXPECT_THAT(Parse(stream, piece), ElementsAre("{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "[DONE]"))
        << "pieces of " << piece;
  }
}

TEST(SseParserTest, JoinsDataLinesAndIgnoresOtherFields) {
  EXPECT_THAT(Parse("event: message\nid: 7\nretry: 10\ndata: one\ndata:two\ndata\n\n", 5),
              ElementsAre("one\ntwo\n"));
}

TEST(SseParserTest, SkipsEventsWithoutDataAndDropsAnUnfinishedOne) {
  EXPECT_THAT(Parse("event: ping\n\n\n\ndata: last", 4), IsEmpty());
}

TEST(SseParserTest, StopsWhenTheReceiverSaysSo) {
  SseParser parser;
  std::vector<std::string> events;
  EXPECT_FALSE(parser.Feed("data: 1\n\ndata: 2\n\n", [&](absl::string_view data) {
    events.emplace_back(data);
    return false;
  }));
  EXPECT_FALSE(parser.Feed("data: 3\n\n", [&](absl::string_view data) {
    events.emplace_back(data);
    return true;
  }));
  EXPECT_THAT(events, ElementsAre("1"));
  EXPECT_FALSE(parser.too_long());
}

TEST(SseParserTest, RefusesALineThatNeverEnds) {
  SseParser parser;
  const std::string piece(1 << 20, 'x');
  bool ok = true;
  for (int i = 0; i < 8 && ok; ++i) {
    ok = parser.Feed(piece, [](absl::string_view) { return true; });
  }
  EXPECT_FALSE(ok);
  EXPECT_TRUE(parser.too_long());
}

}  // namespace
}  // namespace anyai::server
