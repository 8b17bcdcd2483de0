// Device choice: auto/cpu/cuda, CUDA device = local rank mod visible devices.
#include "core/device.h"

#include <gtest/gtest.h>

#include "core/errors.h"

namespace vitruvian {
namespace {

TEST(Device, ParsesChoices) {
  EXPECT_EQ(parse_device_choice("auto"), DeviceChoice::kAuto);
  EXPECT_EQ(parse_device_choice("cpu"), DeviceChoice::kCpu);
  EXPECT_EQ(parse_device_choice("cuda"), DeviceChoice::kCuda);
  EXPECT_THROW(parse_device_choice("tpu"), InputError);
}

TEST(Device, CpuAlwaysWorks) {
  EXPECT_EQ(select_device(DeviceChoice::kCpu, 5), c10::Device(c10::kCPU));
}

TEST(Device, AutoAndCudaFollowVisibleDevices) {
  const int count = cuda_device_count();
  if (count == 0) {
    EXPECT_EQ(select_device(DeviceChoice::kAuto, 0), c10::Device(c10::kCPU));
    EXPECT_THROW(select_device(DeviceChoice::kCuda, 0), InputError);
  } else {
    for (int local_rank = 0; local_rank < 2 * count + 1; ++local_rank) {
      EXPECT_EQ(select_device(DeviceChoice::kCuda, local_rank), c10::Device(c10::kCUDA, local_rank % count));
      EXPECT_EQ(select_device(DeviceChoice::kAuto, local_rank), c10::Device(c10::kCUDA, local_rank % count));
    }
  }
}

}  // namespace
}  // namespace vitruvian
