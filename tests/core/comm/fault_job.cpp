// A small job for the fault-injection checks. `control_plane`: five agreements; `work_queue`: a
// queue of ten 100 ms items. VITRUVIAN_FAULT then makes one rank leave or stop, and the job
// must end with a timeout message naming that rank (exit 124) within seconds, not hang.
#include <chrono>
#include <cstring>
#include <thread>

#include "core/comm/control_plane.h"
#include "core/comm/work_queue.h"
#include "core/logging.h"
#include "core/mpi_env.h"

int main(int argc, char** argv) {
  vitruvian::MpiEnvironment env(&argc, &argv);
  vitruvian::init_logging({"info", false}, env.rank(), env.size(), env.host());
  constexpr double kTimeout = 2.0;
  if (argc > 1 && std::strcmp(argv[1], "control_plane") == 0) {
    vitruvian::ControlPlane plane(env.world(), vitruvian::ControlPlaneOptions().timeout_s(kTimeout));
    for (int i = 0; i < 5; ++i) plane.agree("", "fault check");
  } else {
    vitruvian::WorkQueue queue(env.world(), 10, env.thread_multiple(),
                               vitruvian::WorkQueueOptions().timeout_s(kTimeout));
    while (queue.next()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    queue.finish();
  }
  return 0;
}
