#include "quota/plan.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anyai::quota {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

struct Cell {
  const char* plan;
  const char* feature_class;
  absl::Duration window;
  int64_t max_requests;
};

// The seed's "Rate Limits" tables, transcribed cell by cell ("-" cells have no window).
constexpr absl::Duration kMinute = absl::Minutes(1);
constexpr absl::Duration kHour = absl::Hours(1);
constexpr absl::Duration kDay = absl::Hours(24);
const Cell kSeedCells[] = {
    {"free", "llm", kMinute, 10},
    {"free", "llm", kDay, 2000},
    {"free", "closed_llm", kHour, 25},
    {"free", "closed_llm", kDay, 100},
    {"free", "image_generation", kMinute, 120},
    {"free", "image_generation", kDay, 750},
    {"free", "globalask", kMinute, 120},
    {"free", "globalask", kDay, 750},
    {"free", "imagine", kDay, 20},
    {"free", "vision", kHour, 25},
    {"free", "vision", kDay, 100},
    {"premium", "llm", kMinute, 30},
    {"premium", "llm", kDay, 5000},
    {"premium", "closed_llm", kHour, 50},
    {"premium", "closed_llm", kDay, 300},
    {"premium", "image_generation", kMinute, 120},
    {"premium", "image_generation", kDay, 750},
    {"premium", "globalask", kMinute, 120},
    {"premium", "globalask", kDay, 750},
    {"premium", "imagine", kDay, 20},
    {"premium", "vision", kHour, 25},
    {"premium", "vision", kDay, 100},
};

TEST(DefaultPlanTableTest, EqualsTheSeedTablesCellByCell) {
  const PlanTable table = DefaultPlanTable();
  for (const Cell& cell : kSeedCells) {
    SCOPED_TRACE(std::string(cell.plan) + "/" + cell.feature_class);
    const Plan* plan = table.Find(cell.plan);
    ASSERT_NE(plan, nullptr);
    const ClassLimits* limits = plan->Find(cell.feature_class);
    ASSERT_NE(limits, nullptr);
    EXPECT_THAT(limits->windows, ::testing::Contains(Window{cell.window, cell.max_requests}));
  }
  // No window beyond the seed's cells, except the anti-abuse `meta` class.
  int windows = 0;
  for (const Plan& p : table.plans) {
    for (const ClassLimits& c : p.classes) {
      if (c.feature_class != kMeta) windows += static_cast<int>(c.windows.size());
    }
  }
  EXPECT_EQ(windows, static_cast<int>(std::size(kSeedCells)));
  EXPECT_EQ(table.Find("free")->max_message_chars, 1000);
  EXPECT_EQ(table.Find("premium")->max_message_chars, 5000);
  EXPECT_THAT(ValidatePlanTable(table), ::anyai::testing::IsOk());
}

PlanTable OnePlan(std::vector<Window> windows) {
  PlanTable t;
  t.plans.push_back(Plan{.name = "p", .max_message_chars = 10, .classes = {{"c", windows}}});
  return t;
}

TEST(ValidatePlanTableTest, RefusesZeroOrNegativeLimits) {
  EXPECT_THAT(ValidatePlanTable(OnePlan({{absl::Seconds(60), 0}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_requests 0")));
  EXPECT_THAT(ValidatePlanTable(OnePlan({{absl::Seconds(60), -3}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plan \"p\", class \"c\"")));
}

TEST(ValidatePlanTableTest, RefusesZeroNegativeOrTinyWindows) {
  EXPECT_THAT(ValidatePlanTable(OnePlan({{absl::ZeroDuration(), 5}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least")));
  EXPECT_THAT(ValidatePlanTable(OnePlan({{absl::Seconds(-1), 5}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least")));
  EXPECT_THAT(ValidatePlanTable(OnePlan({{absl::Milliseconds(500), 5}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least")));
}

TEST(ValidatePlanTableTest, RefusesDuplicates) {
  EXPECT_THAT(ValidatePlanTable(OnePlan({{absl::Seconds(60), 5}, {absl::Seconds(60), 7}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("defined twice")));
  PlanTable two_plans = OnePlan({{absl::Seconds(60), 5}});
  two_plans.plans.push_back(two_plans.plans[0]);
  EXPECT_THAT(ValidatePlanTable(two_plans),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plan \"p\": defined twice")));
  PlanTable two_classes = OnePlan({{absl::Seconds(60), 5}});
  two_classes.plans[0].classes.push_back(two_classes.plans[0].classes[0]);
  EXPECT_THAT(ValidatePlanTable(two_classes),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("listed twice")));
}

TEST(ValidatePlanTableTest, RefusesWindowsThatDoNotNest) {
  EXPECT_THAT(ValidatePlanTable(OnePlan({{absl::Seconds(2), 5}, {absl::Seconds(3), 7}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("whole multiple")));
  EXPECT_THAT(ValidatePlanTable(OnePlan({{absl::Seconds(2), 5}, {absl::Seconds(6), 7}})),
              ::anyai::testing::IsOk());
}

TEST(ValidatePlanTableTest, RefusesAPlanMissingAClassAnotherPlanMeters) {
  PlanTable t = OnePlan({{absl::Seconds(60), 5}});
  t.plans.push_back(Plan{.name = "q", .max_message_chars = 10, .classes = {}});
  EXPECT_THAT(ValidatePlanTable(t),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plan \"q\": class \"c\"")));
}

TEST(ValidatePlanTableTest, RefusesAnEmptyTable) {
  EXPECT_THAT(ValidatePlanTable(PlanTable{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least one plan")));
}

}  // namespace
}  // namespace anyai::quota
