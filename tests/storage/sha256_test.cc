#include "storage/sha256.h"

#include <string>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace anyai::storage {
namespace {

std::string HexSha256(const std::string& data) { return absl::BytesToHexString(Sha256(data)); }

// FIPS 180-4 examples (NIST "SHA256.pdf" and "SHA2_Additional.pdf").
TEST(Sha256Test, MatchesTheStandardVectorForTheEmptyString) {
  EXPECT_EQ(HexSha256(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Test, MatchesTheStandardVectorForAbc) {
  EXPECT_EQ(HexSha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, MatchesTheStandardVectorForThe448BitMessage) {
  EXPECT_EQ(HexSha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, MatchesTheStandardVectorForThe896BitMessage) {
  EXPECT_EQ(
      HexSha256("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmn"
                "opqklmnopqrlmnopqrsmnopqrstnopqrstu"),
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256Test, MatchesTheStandardVectorForOneMillionAs) {
  EXPECT_EQ(HexSha256(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Lengths around the padding boundaries (55/56 bytes: one or two final blocks; 64: a whole
// block), checked against coreutils' sha256sum.
TEST(Sha256Test, PadsCorrectlyAroundBlockBoundaries) {
  EXPECT_EQ(HexSha256(std::string(55, 'a')),
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(HexSha256(std::string(56, 'a')),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(HexSha256(std::string(63, 'a')),
            "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34");
  EXPECT_EQ(HexSha256(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
  EXPECT_EQ(HexSha256(std::string(65, 'a')),
            "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0");
  EXPECT_EQ(HexSha256(std::string(119, 'a')),
            "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb");
  EXPECT_EQ(HexSha256(std::string(120, 'a')),
            "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c");
}

// A mebibyte of every byte value in turn (0, 1, ..., 255, 0, ...): binary data, not text. The
// digest is what coreutils' sha256sum and Python's hashlib give for the same bytes.
TEST(Sha256Test, MatchesSha256sumForAMebibyteOfEveryByteValue) {
  std::string data(1 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i & 0xff);

  EXPECT_EQ(HexSha256(data), "fbbab289f7f94b25736c58be46a994c441fd02552cc6022352e3d86d2fab7c83");
}

TEST(Sha256Test, ReturnsThirtyTwoRawBytes) { EXPECT_EQ(Sha256("abc").size(), kSha256Size); }

TEST(Sha256Test, HashesBytesNotCStrings) {
  const std::string with_nul("a\0b", 3);

  EXPECT_NE(Sha256(with_nul), Sha256("a"));
}

TEST(ConstantTimeEqualsTest, TellsEqualFromDifferentBytes) {
  const std::string a = Sha256("one");
  std::string last_differs = a;
  last_differs.back() ^= 1;
  std::string first_differs = a;
  first_differs.front() ^= 0x80;

  EXPECT_TRUE(ConstantTimeEquals(a, Sha256("one")));
  EXPECT_FALSE(ConstantTimeEquals(a, last_differs));
  EXPECT_FALSE(ConstantTimeEquals(a, first_differs));
}

TEST(ConstantTimeEqualsTest, DifferentLengthsAreNotEqual) {
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("abcd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

// An admin token and guesses at it: a prefix, an extension, one wrong byte, a NUL appended.
TEST(ConstantTimeEqualsTest, AcceptsOnlyTheExactSecret) {
  const std::string token = "admin-3f9a0c1d5e7b";

  EXPECT_TRUE(ConstantTimeEquals(token, std::string("admin-3f9a0c1d5e7b")));
  EXPECT_FALSE(ConstantTimeEquals(token, "admin-3f9a0c1d5e7"));
  EXPECT_FALSE(ConstantTimeEquals(token, "admin-3f9a0c1d5e7bX"));
  EXPECT_FALSE(ConstantTimeEquals(token, "admin-3f9a0c1d5e7c"));
  EXPECT_FALSE(ConstantTimeEquals(token, token + std::string(1, '\0')));
  EXPECT_FALSE(ConstantTimeEquals(token, ""));
}

TEST(ConstantTimeEqualsTest, ComparesLongInputsByEveryByte) {
  const std::string a(1 << 20, 'x');
  std::string middle_differs = a;
  middle_differs[a.size() / 2] = 'y';

  EXPECT_TRUE(ConstantTimeEquals(a, std::string(1 << 20, 'x')));
  EXPECT_FALSE(ConstantTimeEquals(a, middle_differs));
}

}  // namespace
}  // namespace anyai::storage
