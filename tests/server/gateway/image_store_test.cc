// server/gateway/image_store.cc: images kept for their URLs, bounded in time and size.
#include "server/gateway/image_store.h"

#include <atomic>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;

class ImageStoreTest : public ::testing::Test {
 protected:
  ImageStore Store(int64_t max_bytes) {
    return ImageStore({.ttl = absl::Hours(1), .max_bytes = max_bytes, .clock = [this] {
                         return absl::FromUnixSeconds(now_s_.load());
                       }});
  }
  std::atomic<int64_t> now_s_{1'767'225'600};
};

TEST_F(ImageStoreTest, AnImageIsServedUnderItsIdUntilItExpires) {
  ImageStore store = Store(1 << 20);
  absl::StatusOr<std::string> id = store.Put("png bytes");
  ASSERT_THAT(id, IsOk());
  EXPECT_THAT(*id, ::testing::MatchesRegex("[0-9a-f]{32}"));
  absl::StatusOr<ImageStore::Image> image = store.Get(*id);
  ASSERT_THAT(image, IsOk());
  EXPECT_EQ(*image->png, "png bytes");
  EXPECT_EQ(image->ttl_left, absl::Hours(1));
  now_s_ += 3599;
  ASSERT_THAT(store.Get(*id), IsOk());
  EXPECT_EQ(store.Get(*id)->ttl_left, absl::Seconds(1));
  now_s_ += 1;
  EXPECT_THAT(store.Get(*id), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(ImageStoreTest, IdsAreUnguessableAndUnknownOnesAreNotFound) {
  ImageStore store = Store(1 << 20);
  EXPECT_NE(*store.Put("a"), *store.Put("a"));
  EXPECT_THAT(store.Get(std::string(32, '0')), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(store.Get(""), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(ImageStoreTest, TheOldestLeaveFirstWhenANewOneDoesNotFit) {
  ImageStore store = Store(10);
  const std::string first = *store.Put("aaaa");
  now_s_ += 1;
  const std::string second = *store.Put("bbbb");
  now_s_ += 1;
  const std::string third = *store.Put("cccc");  // 12 bytes would not fit: `first` leaves
  EXPECT_THAT(store.Get(first), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(store.Get(second), IsOk());
  EXPECT_THAT(store.Get(third), IsOk());
  EXPECT_EQ(store.bytes(), 8);
}

TEST_F(ImageStoreTest, ExpiredImagesMakeRoomBeforeLiveOnesDo) {
  ImageStore store = Store(8);
  ASSERT_THAT(store.Put("aaaa"), IsOk());
  ASSERT_THAT(store.Put("bbbb"), IsOk());
  now_s_ += 3600;  // both expired
  ASSERT_THAT(store.Put("cccc"), IsOk());
  EXPECT_EQ(store.bytes(), 4);
}

TEST_F(ImageStoreTest, AnImageLargerThanTheStoreIsRefused) {
  ImageStore store = Store(3);
  EXPECT_THAT(store.Put("four"), StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  EXPECT_EQ(store.bytes(), 0);
}

TEST_F(ImageStoreTest, DropExpiredFreesWithoutWaitingForAPut) {
  ImageStore store = Store(1 << 20);
  ASSERT_THAT(store.Put("aaaa"), IsOk());
  now_s_ += 3600;
  EXPECT_EQ(store.bytes(), 4);
  store.DropExpired();
  EXPECT_EQ(store.bytes(), 0);
}

TEST(ImageBaseUrlTest, IsTheAuthorityTheCallerUsedWithAnyPortAskedFor) {
  EXPECT_EQ(ImageBaseUrl("gateway.example:8080"), "http://gateway.example:8080");
  EXPECT_EQ(ImageBaseUrl("gateway.example"), "http://gateway.example");
  EXPECT_EQ(ImageBaseUrl("[::1]:9"), "http://[::1]:9");
  EXPECT_EQ(ImageBaseUrl("127.0.0.1:50051", 8080), "http://127.0.0.1:8080");
  EXPECT_EQ(ImageBaseUrl("api.example.com", 8080), "http://api.example.com:8080");
  EXPECT_EQ(ImageBaseUrl("[2001:DB8::1]", 8080), "http://[2001:db8::1]:8080");
}

TEST(ImageBaseUrlTest, AnAuthorityThatIsNoHostGivesRelativeUrls) {
  for (const char* bad : {"", "evil.example/\"><script>", "a b", "host:99999", "[::1"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(ImageBaseUrl(bad), "");
    EXPECT_EQ(ImageBaseUrl(bad, 8080), "");
  }
}

}  // namespace
}  // namespace anyai::server
