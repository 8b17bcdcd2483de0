// The stop request: a real signal sets it, the first signal is the one kept, and a process that
// installed the handlers survives SIGTERM.
#include "core/stop_request.h"

#include <gtest/gtest.h>

#include <csignal>

namespace vitruvian {
namespace {

TEST(StopRequest, ASignalIsRecordedAndTheFirstOneKept) {
  install_stop_handlers();
  set_stop_signal(0);
  EXPECT_FALSE(stop_requested());
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  EXPECT_EQ(stop_signal(), SIGUSR1);
  ASSERT_EQ(std::raise(SIGTERM), 0);  // handled: the process goes on
  EXPECT_EQ(stop_signal(), SIGUSR1);
  EXPECT_STREQ(signal_name(stop_signal()), "SIGUSR1");
  set_stop_signal(0);
  ASSERT_EQ(std::raise(SIGTERM), 0);
  EXPECT_EQ(stop_signal(), SIGTERM);
  EXPECT_STREQ(signal_name(SIGTERM), "SIGTERM");
  set_stop_signal(0);
  EXPECT_FALSE(stop_requested());
}

}  // namespace
}  // namespace vitruvian
