// UIDs derived for DICOM results: valid DICOM UIDs, the same for the same parts, different for
// any change.
#include "launch/campaign/dicom_results.h"

#include "data/dicom_uid.h"

#include <gtest/gtest.h>

#include <set>

namespace vitruvian::campaign {
namespace {

TEST(DerivedUid, IsAStableValidUid) {
  const std::string a = derived_uid({"1.2.3", "organs", "model step 1", "abc", "seg instance"});
  EXPECT_EQ(a, derived_uid({"1.2.3", "organs", "model step 1", "abc", "seg instance"}));
  EXPECT_EQ(a.rfind(std::string(data::kDefaultUidRoot) + ".", 0), 0u) << a;
  EXPECT_TRUE(data::is_valid_uid(a)) << a;
  // Any change of a part, or where the parts split, gives another UID.
  std::set<std::string> uids{a};
  uids.insert(derived_uid({"1.2.3", "organs", "model step 1", "abd", "seg instance"}));
  uids.insert(derived_uid({"1.2.3", "organs", "model step 1", "abc", "seg series"}));
  uids.insert(derived_uid({"1.2.3", "organ", "smodel step 1", "abc", "seg instance"}));
  uids.insert(derived_uid({"1.2.4", "organs", "model step 1", "abc", "seg instance"}));
  EXPECT_EQ(uids.size(), 5u);
}

}  // namespace
}  // namespace vitruvian::campaign
