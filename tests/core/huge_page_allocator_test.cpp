// core/huge_page_allocator: tensors from 2 MiB up are 2 MiB-aligned (and advised for huge pages),
// smaller ones keep LibTorch's 64-byte alignment; all of them compute and free as usual.
#include "core/huge_page_allocator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace vitruvian {
namespace {

bool transparent_huge_pages_off() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  return !std::getline(in, line) || line.find("[never]") != std::string::npos;
}

TEST(HugePageAllocator, LargeTensorsAre2MiBAlignedAndWorkAsUsual) {
  if (transparent_huge_pages_off()) GTEST_SKIP() << "transparent huge pages are off on this machine";
  ASSERT_TRUE(install_huge_page_allocator());
  EXPECT_TRUE(install_huge_page_allocator());  // once; a second call changes nothing
  EXPECT_TRUE(huge_page_allocator_installed());
  for (int round = 0; round < 3; ++round) {
    const at::Tensor large = at::ones({3, 1024, 1024}, at::kFloat);  // 12 MiB
    const at::Tensor small = at::ones({1000}, at::kFloat);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(large.data_ptr()) % (std::uintptr_t{2} << 20), 0u);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(small.data_ptr()) % 64, 0u);
    EXPECT_DOUBLE_EQ(large.sum().item<double>(), 3.0 * 1024 * 1024);
    EXPECT_DOUBLE_EQ((small * 2).sum().item<double>(), 2000.0);
  }
  EXPECT_EQ(at::empty({0}, at::kFloat).numel(), 0);
}

}  // namespace
}  // namespace vitruvian
