// A 1000-element allreduce that rank 1 never joins (it is "stuck" for 60 s). With a 2 s timeout
// the watchdog on the other ranks must end the whole job with exit code 124 and a message naming
// the rank, the operation and the communicator, long before rank 1 wakes up.
#include <ATen/ATen.h>

#include <chrono>
#include <thread>

#include "core/comm/communicator.h"
#include "core/logging.h"
#include "core/mpi_env.h"

int main(int argc, char** argv) {
  vitruvian::MpiEnvironment env(&argc, &argv);
  vitruvian::init_logging({"info", false}, env.rank(), env.size(), env.host());
  auto comm = vitruvian::make_communicator(env.world(), c10::Device(c10::kCPU),
                                           vitruvian::CommunicatorOptions().timeout_s(2.0).name("world"));
  at::Tensor t = at::ones({1000}, at::kFloat);
  if (env.rank() == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(60));
    return 0;
  }
  comm->allreduce(t);
  return 0;  // not reached: the job is ended by the watchdog
}
