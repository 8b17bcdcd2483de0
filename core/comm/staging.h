// A contiguous stand-in for a possibly strided tensor, shared by the communicator backends:
// collectives run on the contiguous buffer and the result is copied back into the original.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace vitruvian {

class Staged {
 public:
  /// For in-place collectives (allreduce, broadcast): the buffer starts with the tensor's values.
  static Staged in_place(const at::Tensor& tensor);
  /// For outputs the collective overwrites: the buffer's initial contents are left unset.
  static Staged output(const at::Tensor& tensor);

  const at::Tensor& buffer() const noexcept { return buffer_; }
  /// True if the buffer is a copy that write_back() must copy into the original.
  bool copied() const { return !buffer_.is_same(original_); }
  /// Address of element `offset` of the buffer, or nullptr for an empty buffer (MPI and NCCL
  /// accept a null pointer with a zero count).
  void* data(std::int64_t offset = 0) const;
  /// Copies the buffer into the original tensor if it is a copy.
  void write_back() const;

 private:
  Staged(at::Tensor original, at::Tensor buffer) : original_(std::move(original)), buffer_(std::move(buffer)) {}
  at::Tensor original_, buffer_;
};

}  // namespace vitruvian
