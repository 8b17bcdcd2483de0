// The Ledger: committed studies verify, spoilt or foreign ones are redone, killed runs' leftovers
// go, --force removes only the chosen studies, failure records come and go with their studies.
#include "launch/campaign/ledger.h"

#include <gtest/gtest.h>

#include <fstream>

#include "../../data/scratch_test.h"
#include "core/atomic_file.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;
using LedgerTest = data::ScratchTest<3>;

void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

void commit_study(const Ledger& ledger, const std::string& id, const std::string& fingerprint) {
  ledger.commit(id, [&](const fs::path& dir) {
    write(dir / "labels.bin", "labels of " + id);
    write(dir / "report.json", R"({"study": ")" + id + R"(", "campaign_fingerprint": ")" + fingerprint + R"("})");
  });
}

TEST_F(LedgerTest, CommittedStudiesVerifyAndSpoiltOrForeignOnesDoNot) {
  const Ledger ledger(dir_ / "out");
  ledger.prepare(false, [](const std::string&) { return true; });
  EXPECT_EQ(ledger.check("a", "f1"), "not done");
  commit_study(ledger, "a", "f1");
  commit_study(ledger, "b", "f1");
  EXPECT_EQ(ledger.check("a", "f1"), "");
  EXPECT_EQ(ledger.report("a")["study"], "a");
  EXPECT_EQ(ledger.check("a", "f2"), "made with other settings or models");
  write(ledger.study_dir("b") / "labels.bin", "changed");
  EXPECT_NE(ledger.check("b", "f1"), "");
  fs::remove(ledger.study_dir("b") / "labels.bin");
  EXPECT_NE(ledger.check("b", "f1").find("labels.bin"), std::string::npos) << ledger.check("b", "f1");
}

TEST_F(LedgerTest, AFailedCommitLeavesNothingAndTheFailureRecordStays) {
  const Ledger ledger(dir_ / "out");
  ledger.prepare(false, [](const std::string&) { return true; });
  ledger.record_failure("c", "process", 1, "c.nii.gz: truncated");
  EXPECT_THROW(ledger.commit("c", [](const fs::path& dir) {
    write(dir / "half.bin", "x");
    throw std::runtime_error("disk full");
  }),
               std::runtime_error);
  EXPECT_FALSE(fs::exists(ledger.study_dir("c")));
  EXPECT_EQ(fs::directory_iterator(dir_ / "out" / "studies"), fs::directory_iterator()) << "a temporary was left";
  ASSERT_EQ(ledger.failures().size(), 1u);
  EXPECT_EQ(ledger.failures().at("c"), "c.nii.gz: truncated");
  commit_study(ledger, "c", "f1");  // done at last: the record goes
  EXPECT_TRUE(ledger.failures().empty());
}

TEST_F(LedgerTest, PrepareRemovesLeftoversAndForceRemovesOnlyTheChosenStudies) {
  const Ledger ledger(dir_ / "out");
  ledger.prepare(false, [](const std::string&) { return true; });
  commit_study(ledger, "keep", "f1");
  commit_study(ledger, "redo", "f1");
  ledger.record_failure("redo", "process", 0, "x");
  ledger.record_failure("other", "process", 0, "y");
  // What a killed run leaves: a study folder and a failure record caught half-written.
  const fs::path half_study = temporary_path_for(ledger.study_dir("late"));
  fs::create_directories(half_study);
  write(half_study / "labels.bin", "half");
  const fs::path half_record = temporary_path_for(dir_ / "out" / "failed" / "late.json");
  write(half_record, "{");
  write(dir_ / "out" / "campaign.json", "{}");
  EXPECT_EQ(ledger.failures().size(), 2u) << "a half-written record counted as a failure";

  ledger.prepare(false, [](const std::string&) { return true; });
  EXPECT_FALSE(fs::exists(half_study));
  EXPECT_FALSE(fs::exists(half_record));
  EXPECT_TRUE(fs::exists(dir_ / "out" / "campaign.json"));

  ledger.prepare(true, [](const std::string& id) { return id == "redo"; });
  EXPECT_FALSE(fs::exists(ledger.study_dir("redo")));
  EXPECT_EQ(ledger.check("keep", "f1"), "");
  EXPECT_EQ(ledger.failures().count("redo"), 0u);
  EXPECT_EQ(ledger.failures().count("other"), 1u);
  EXPECT_FALSE(fs::exists(dir_ / "out" / "campaign.json"));
}

TEST_F(LedgerTest, AnUnreadableFailureRecordSaysSo) {
  const Ledger ledger(dir_ / "out");
  ledger.prepare(false, [](const std::string&) { return true; });
  write(dir_ / "out" / "failed" / "d.json", "{not json");
  EXPECT_NE(ledger.failures().at("d").find("unreadable"), std::string::npos);
}

}  // namespace
}  // namespace vitruvian::campaign
