// Tensors on transparent huge pages: LibTorch's CPU allocator replaced by one that aligns every
// tensor of 2 MiB or more to 2 MiB and asks the kernel for huge pages there (madvise
// MADV_HUGEPAGE), so a fresh tensor is first touched in 2 MiB page faults instead of 4 KiB
// ones. Where page faults are dear (virtual machines), this is most of the time of a pass over
// a freshly allocated volume.
#pragma once

#include <ATen/core/Tensor.h>

namespace vitruvian {

/// Installs the allocator for this process (once; later calls do nothing). Returns whether it
/// is installed: false when VITRUVIAN_HUGE_PAGES=0 or when transparent huge pages are off
/// (/sys/kernel/mm/transparent_hugepage/enabled says [never]).
bool install_huge_page_allocator();
/// Whether install_huge_page_allocator has installed it in this process.
bool huge_page_allocator_installed();

/// A tensor of zeros whose memory the kernel hands out only where it is written (fresh anonymous
/// pages, huge pages advised from 2 MiB up): reading the rest costs no allocation and no clearing.
/// For large volumes that stay mostly zero (maps placed on a series' grid), where at::zeros would
/// write every byte first. Below 2 MiB, or when the mapping fails, at::zeros.
at::Tensor lazily_zeroed(at::IntArrayRef shape, at::ScalarType type);

}  // namespace vitruvian
