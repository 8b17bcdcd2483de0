// Study claims on real files and processes: a live claim keeps other claimers off, a claim
// without heartbeat (another host) or whose process is gone (this host) is taken over, the
// heartbeat keeps a held claim fresh, and of many processes racing for one stale claim exactly
// one wins. Also the Ledger's leftovers of busy studies.
#include "launch/campaign/study_claims.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "../../data/scratch_test.h"
#include "launch/campaign/ledger.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;
using StudyClaimsTest = data::ScratchTest<11>;
using Result = StudyClaims::Result;

/// A claim written by hand for `claimer`, its mtime `age_s` seconds in the past.
void write_claim(const fs::path& out, const std::string& id, const Claimer& claimer, double age_s) {
  fs::create_directories(out / ".claims");
  const fs::path path = out / ".claims" / (id + ".claim");
  std::ofstream(path) << claimer.to_json().dump() << "\n";
  struct timespec times[2];
  clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= static_cast<time_t>(age_s);
  times[1] = times[0];
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

Claimer elsewhere(double timeout_s) {
  Claimer c;
  c.job = "slurm array 77_3";
  c.rank = 1;
  c.host = "another-node";
  c.pid = 4242;
  c.timeout_s = timeout_s;
  return c;
}

char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() ? 0 : text[paren + 2];
}

double age_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0);
  struct timespec now {};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<double>(now.tv_sec - st.st_mtim.tv_sec) +
         static_cast<double>(now.tv_nsec - st.st_mtim.tv_nsec) * 1e-9;
}

TEST_F(StudyClaimsTest, ALiveClaimKeepsOthersOffUntilReleased) {
  StudyClaims a(dir_, 0, 300), b(dir_, 1, 300);
  EXPECT_EQ(a.claim("s1"), Result::kClaimed);
  EXPECT_EQ(b.claim("s1"), Result::kHeldElsewhere);
  ASSERT_TRUE(b.live_claimer("s1"));
  EXPECT_EQ(b.live_claimer("s1")->rank, 0);
  EXPECT_TRUE(b.any_live());
  a.release("s1");
  EXPECT_FALSE(fs::exists(dir_ / ".claims" / "s1.claim"));
  EXPECT_FALSE(b.any_live());
  EXPECT_EQ(b.claim("s1"), Result::kClaimed);
}

TEST_F(StudyClaimsTest, AnotherHostsClaimIsTakenOverOnlyAfterItsTimeout) {
  write_claim(dir_, "fresh", elsewhere(2), 0);
  write_claim(dir_, "stale", elsewhere(2), 10);
  write_claim(dir_, "slow", elsewhere(60), 10);  // the claimer's longer timeout counts
  StudyClaims claims(dir_, 0, 2);
  EXPECT_EQ(claims.claim("fresh"), Result::kHeldElsewhere);
  EXPECT_EQ(claims.claim("slow"), Result::kHeldElsewhere);
  EXPECT_EQ(claims.claim("stale"), Result::kTakenOver);
  std::ifstream in(dir_ / ".claims" / "stale.claim");
  EXPECT_EQ(Claimer::from_json(nlohmann::json::parse(in)).pid, getpid());
}

TEST_F(StudyClaimsTest, AClaimOfAGoneProcessOnThisHostIsTakenOverAtOnce) {
  const pid_t child = fork();  // exits and is reaped: its pid is free
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  Claimer gone = Claimer::current(0, 300);
  gone.pid = child;
  write_claim(dir_, "s", gone, 0);
  StudyClaims claims(dir_, 0, 300);
  EXPECT_EQ(claims.claim("s"), Result::kTakenOver);
  // A killed process nobody has reaped yet (a zombie) is gone too.
  const pid_t zombie = fork();
  if (zombie == 0) _exit(0);
  for (int i = 0; i < 200 && process_state(zombie) != 'Z'; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  gone.pid = zombie;
  write_claim(dir_, "z", gone, 0);
  EXPECT_EQ(claims.claim("z"), Result::kTakenOver);
  waitpid(zombie, nullptr, 0);
}

TEST_F(StudyClaimsTest, TheHeartbeatKeepsAHeldClaimFresh) {
  StudyClaims claims(dir_, 0, 0.5);  // a heartbeat every 0.1 s
  ASSERT_EQ(claims.claim("s"), Result::kClaimed);
  const fs::path path = dir_ / ".claims" / "s.claim";
  struct timespec old[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), old, 0), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_LT(age_of(path), 0.3);
}

TEST_F(StudyClaimsTest, OfManyProcessesRacingForAStaleClaimExactlyOneWins) {
  write_claim(dir_, "s", elsewhere(1), 30);
  constexpr int kTakers = 8;
  std::vector<pid_t> children;
  for (int i = 0; i < kTakers; ++i) {
    const pid_t child = fork();
    if (child == 0) {
      int code = 2;
      try {
        StudyClaims claims(dir_, i, 1);
        const Result r = claims.claim("s");
        code = r == Result::kHeldElsewhere ? 0 : 1;
        if (code == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));  // hold it while the others look
      } catch (...) {
      }
      _exit(code);
    }
    children.push_back(child);
  }
  int winners = 0;
  for (const pid_t child : children) {
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_NE(WEXITSTATUS(status), 2);
    winners += WEXITSTATUS(status);
  }
  EXPECT_EQ(winners, 1);
}

TEST_F(StudyClaimsTest, SetUpKeepsTheTemporariesOfBusyStudies) {
  const Ledger ledger(dir_ / "out");
  ledger.prepare(false, [](const std::string&) { return true; });
  fs::create_directories(dir_ / "out" / "studies" / ".busy.tmp.999.0");
  fs::create_directories(dir_ / "out" / "studies" / ".idle.tmp.999.0");
  std::ofstream(dir_ / "out" / "failed" / ".busy.json.tmp.999.1.json") << "{}";
  std::ofstream(dir_ / "out" / ".campaign.json.tmp.999.2.json") << "{}";
  ledger.prepare(
      false, [](const std::string&) { return true; }, [](const std::string& id) { return id == "busy"; }, 60);
  EXPECT_TRUE(fs::exists(dir_ / "out" / "studies" / ".busy.tmp.999.0"));
  EXPECT_FALSE(fs::exists(dir_ / "out" / "studies" / ".idle.tmp.999.0"));
  EXPECT_TRUE(fs::exists(dir_ / "out" / "failed" / ".busy.json.tmp.999.1.json"));
  EXPECT_TRUE(fs::exists(dir_ / "out" / ".campaign.json.tmp.999.2.json"));  // younger than 60 s
  ledger.remove_temporaries_of("busy");
  EXPECT_FALSE(fs::exists(dir_ / "out" / "studies" / ".busy.tmp.999.0"));
}

}  // namespace
}  // namespace vitruvian::campaign
