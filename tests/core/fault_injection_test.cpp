// VITRUVIAN_FAULT: the parser (points, ranks, hit counts, actions, and errors naming the bad
// entry), and a `throw` fault acting on exactly the hit it names.
#include "core/fault_injection.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "core/errors.h"

namespace vitruvian {
namespace {

TEST(FaultInjection, ParsesEntries) {
  const auto specs =
      parse_fault_specs("campaign.setup@1:exit,work_queue.item@*#3:stop,a_b-c@12#1:leave,x@0:kill,y@2:throw");
  ASSERT_EQ(specs.size(), 5u);
  EXPECT_EQ(specs[0].point, "campaign.setup");
  EXPECT_EQ(specs[0].rank, 1);
  EXPECT_EQ(specs[0].hit, 1);
  EXPECT_EQ(specs[0].action, FaultSpec::Action::kExit);
  EXPECT_EQ(specs[1].rank, -1);
  EXPECT_EQ(specs[1].hit, 3);
  EXPECT_EQ(specs[1].action, FaultSpec::Action::kStop);
  EXPECT_EQ(specs[2].point, "a_b-c");
  EXPECT_EQ(specs[2].rank, 12);
  EXPECT_EQ(specs[2].action, FaultSpec::Action::kLeave);
  EXPECT_EQ(specs[3].action, FaultSpec::Action::kKill);
  EXPECT_EQ(specs[4].action, FaultSpec::Action::kThrow);
  EXPECT_TRUE(parse_fault_specs("").empty());
}

TEST(FaultInjection, RejectsMalformedEntriesNamingThem) {
  for (const char* bad :
       {"point", "point@1", "@1:exit", "p@x:exit", "p@1#0:exit", "p@1#:exit", "p@1:explode", "p@-1:exit"}) {
    try {
      parse_fault_specs(std::string("ok@0:exit,") + bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
    }
  }
}

TEST(FaultInjection, ThrowsOnTheNamedHitOnly) {
  // The variable is read at the first fault point of the process: this is the only test that
  // reaches one.
  ::setenv("VITRUVIAN_FAULT", "unit.point@0#2:throw,unit.other@1:throw", 1);
  EXPECT_NO_THROW(fault_point("unit.point"));
  EXPECT_THROW(fault_point("unit.point"), InternalError);
  EXPECT_NO_THROW(fault_point("unit.point"));
  EXPECT_NO_THROW(fault_point("unit.other"));  // another rank's
  EXPECT_NO_THROW(fault_point("unit.unnamed"));
}

}  // namespace
}  // namespace vitruvian
