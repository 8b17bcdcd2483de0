// Staged: contiguous buffers for strided tensors.
#include "core/comm/staging.h"

#include <ATen/ATen.h>

namespace vitruvian {

Staged Staged::in_place(const at::Tensor& tensor) {
  return Staged(tensor, tensor.is_contiguous() ? tensor : tensor.contiguous());
}

Staged Staged::output(const at::Tensor& tensor) {
  return Staged(tensor, tensor.is_contiguous() ? tensor : at::empty_like(tensor, at::MemoryFormat::Contiguous));
}

void* Staged::data(std::int64_t offset) const {
  if (buffer_.numel() == 0) return nullptr;
  return static_cast<char*>(buffer_.data_ptr()) + offset * buffer_.element_size();
}

void Staged::write_back() const {
  if (copied()) original_.copy_(buffer_);
}

}  // namespace vitruvian
