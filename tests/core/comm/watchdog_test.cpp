// The watchdog fires once for an operation that outlives the limit, never for finished ones,
// and ends entries whose done-probe reports completion.
#include "core/comm/watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace vitruvian {
namespace {

using namespace std::chrono_literals;

TEST(Watchdog, FiresForAStuckOperationWithItsDescription) {
  std::promise<std::string> fired;
  Watchdog dog("on communicator 'test' (mpi, 2 ranks)", 0.2, [&](const std::string& m) { fired.set_value(m); });
  OpDescription what;
  what.name = "allreduce";
  what.sequence = 3;
  what.op = "sum";
  what.dtype = "float32";
  what.numel = 8;
  const auto id = dog.begin(what);
  auto message = fired.get_future();
  ASSERT_EQ(message.wait_for(5s), std::future_status::ready);
  const std::string text = message.get();
  EXPECT_NE(text.find("waited"), std::string::npos) << text;
  EXPECT_NE(text.find("limit 0.2 s"), std::string::npos) << text;
  EXPECT_NE(text.find("allreduce #3 (sum, float32, 8 elements) on communicator 'test' (mpi, 2 ranks)"), std::string::npos)
      << text;
  dog.end(id);
}

TEST(Watchdog, QuietForOperationsThatEndInTime) {
  std::atomic<int> fired{0};
  Watchdog dog("ctx", 0.3, [&](const std::string&) { ++fired; });
  for (int i = 0; i < 20; ++i) {
    OpDescription barrier;
    barrier.name = "barrier";
    barrier.sequence = static_cast<std::uint64_t>(i);
    Watchdog::Scope scope(dog, barrier);
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(fired.load(), 0);
}

TEST(Watchdog, DoneProbeEndsDeviceWork) {
  std::atomic<int> fired{0};
  std::atomic<bool> done{false};
  Watchdog dog("ctx", 0.3, [&](const std::string&) { ++fired; });
  OpDescription device_work;
  device_work.name = "device work";
  dog.begin(device_work, [&] { return done.load(); });
  std::this_thread::sleep_for(100ms);
  done = true;
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(fired.load(), 0);
}

TEST(Watchdog, DisabledWithNonPositiveTimeout) {
  std::atomic<int> fired{0};
  Watchdog dog("ctx", 0.0, [&](const std::string&) { ++fired; });
  dog.begin(OpDescription{});
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(fired.load(), 0);
}

TEST(OpDescription, FormatsOnlyWhatIsSet) {
  OpDescription broadcast;
  broadcast.name = "broadcast";
  broadcast.sequence = 2;
  broadcast.root = 0;
  broadcast.dtype = "int64";
  broadcast.numel = 1;
  EXPECT_EQ(broadcast.str(), "broadcast #2 (root 0, int64, 1 element)");
  OpDescription barrier;
  barrier.name = "barrier";
  barrier.sequence = 5;
  EXPECT_EQ(barrier.str(), "barrier #5");
}

}  // namespace
}  // namespace vitruvian
