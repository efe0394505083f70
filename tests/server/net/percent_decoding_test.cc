// server/net/percent_decoding.cc: the one "%XX" decoder.
#include "server/net/percent_decoding.h"

#include "gtest/gtest.h"

namespace anyai::net {
namespace {

TEST(PercentDecode, DecodesEscapesOfEitherCase) {
  EXPECT_EQ(PercentDecode("gpt%2D4"), "gpt-4");
  EXPECT_EQ(PercentDecode("%5b::1%5D"), "[::1]");
  EXPECT_EQ(PercentDecode("%00"), std::string(1, '\0'));
  EXPECT_EQ(PercentDecode(""), "");
}

TEST(PercentDecode, PlusIsASpaceOnlyInForms) {
  EXPECT_EQ(PercentDecode("a+b"), "a+b");
  EXPECT_EQ(PercentDecode("a+b%2B", PlusIs::kSpace), "a b+");
}

TEST(PercentDecode, RefusesMalformedEscapes) {
  for (const char* bad : {"%", "100%", "%4", "%4g", "%%41", "a%zz"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(PercentDecode(bad), std::nullopt);
  }
}

TEST(PercentDecode, ReadsGrpcPeerUris) {
  EXPECT_EQ(PercentDecode("ipv6:%5B::1%5D:54621"), "ipv6:[::1]:54621");
  EXPECT_EQ(PercentDecode("ipv6:%5Bfe80::1%25eth0%5D:5555"), "ipv6:[fe80::1%eth0]:5555");
}

}  // namespace
}  // namespace anyai::net
