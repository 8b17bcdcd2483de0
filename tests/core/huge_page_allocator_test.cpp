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

/// Resident memory of this process (bytes), from /proc/self/statm.
double resident_bytes() {
  std::ifstream in("/proc/self/statm");
  double size = 0, resident = 0;
  in >> size >> resident;
  return resident * 4096;
}

TEST(LazilyZeroed, ReadsAsZerosAndTakesMemoryOnlyWhereWritten) {
  for (const at::ScalarType type : {at::kFloat, at::kByte}) {
    const double before = resident_bytes();
    at::Tensor big = lazily_zeroed({64, 1024, 1024}, type);  // 64 Mi elements: 256 or 64 MiB
    ASSERT_EQ(big.sizes(), (at::IntArrayRef{64, 1024, 1024}));
    ASSERT_EQ(big.scalar_type(), type);
    big[3].fill_(1);  // one slice written: 4 or 1 MiB, a few huge pages
    const double grown = resident_bytes() - before;
    EXPECT_LT(grown, 32.0 * (1 << 20)) << "resident memory grew by " << grown << " bytes";
    EXPECT_EQ(big.sum(at::kDouble).item<double>(), 1024.0 * 1024);  // read back: the rest is zero
    EXPECT_EQ(big[3].min().item<double>(), 1);
  }
  const at::Tensor small = lazily_zeroed({10, 10}, at::kFloat);  // below 2 MiB: at::zeros
  EXPECT_EQ(small.count_nonzero().item<std::int64_t>(), 0);
  EXPECT_EQ(lazily_zeroed({0, 5}, at::kFloat).numel(), 0);
}

}  // namespace
}  // namespace vitruvian
