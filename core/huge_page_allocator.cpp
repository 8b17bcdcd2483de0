// The huge-page CPU allocator for tensors (see the header): installed once per process.
#include "core/huge_page_allocator.h"

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "core/torch_compat.h"

namespace vitruvian {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kAlignment = 64;  // LibTorch's own CPU alignment

void release(void* p) { std::free(p); }

/// posix_memalign for every size (64-byte aligned, as LibTorch's default; 2 MiB aligned and
/// advised for huge pages from 2 MiB up), freed with free(): one deleter for all.
class HugePageAllocator final : public c10::Allocator {
 public:
  // LibTorch 2.3 made allocate non-const and added copy_data.
#if VITRUVIAN_TORCH_AT_LEAST(2, 3)
  c10::DataPtr allocate(std::size_t n) override { return make(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#else
  c10::DataPtr allocate(std::size_t n) const override { return make(n); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

 private:
  static c10::DataPtr make(std::size_t n) {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (n == 0) return {nullptr, nullptr, &release, cpu};
    const bool huge = n >= kHugePage;
    void* p = nullptr;
    if (posix_memalign(&p, huge ? kHugePage : kAlignment, n) != 0 || p == nullptr) {
      return c10::GetDefaultCPUAllocator()->allocate(n);  // which reports the failure its own way
    }
    if (huge) madvise(p, (n + 4095) / 4096 * 4096, MADV_HUGEPAGE);  // advice only: a refusal changes nothing
    return {p, p, &release, cpu};
  }
};

/// The one instance, never destroyed: LibTorch may still allocate while statics are torn down.
HugePageAllocator& the_allocator() {
  static auto* allocator = new HugePageAllocator;
  return *allocator;
}

bool huge_pages_available() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(in, line)) return false;
  return line.find("[never]") == std::string::npos;
}

}  // namespace

bool huge_page_allocator_installed() { return c10::GetCPUAllocator() == &the_allocator(); }

bool install_huge_page_allocator() {
  static const bool installed = [] {
    const char* opt_out = std::getenv("VITRUVIAN_HUGE_PAGES");
    if (opt_out != nullptr && std::strcmp(opt_out, "0") == 0) return false;
    if (!huge_pages_available()) return false;
    c10::SetCPUAllocator(&the_allocator(), /*priority=*/1);
    return true;
  }();
  return installed;
}

at::Tensor lazily_zeroed(at::IntArrayRef shape, at::ScalarType type) {
  const auto options = at::TensorOptions().dtype(type);
  std::size_t bytes = c10::elementSize(type);
  for (const std::int64_t d : shape) bytes *= static_cast<std::size_t>(std::max<std::int64_t>(d, 0));
  if (bytes < kHugePage) return at::zeros(shape, options);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return at::zeros(shape, options);
  madvise(p, bytes, MADV_HUGEPAGE);  // advice only
  return at::from_blob(
      p, shape, [bytes](void* q) { munmap(q, bytes); }, options);
}

}  // namespace vitruvian
