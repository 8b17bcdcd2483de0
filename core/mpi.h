// MPI essentials: error checking that turns MPI codes into MpiError, and MpiComm, a move-only
// RAII handle for MPI_Comm (world is borrowed, split/dup results are owned and freed).
#pragma once

#include <mpi.h>

#include <string>

namespace vitruvian {

/// The MPI library's text for an error code.
std::string mpi_error_string(int code);

/// Throws MpiError naming `call` when `code` is not MPI_SUCCESS.
void check_mpi(int code, const char* call);

/// True between MPI_Init and MPI_Finalize.
bool mpi_is_active();

/// Move-only owner of an MPI communicator. Communicators made by split()/dup() are freed in the
/// destructor (which logs, never throws); borrowed ones (world) are not.
class MpiComm {
 public:
  MpiComm() = default;
  /// Wraps MPI_COMM_WORLD (borrowed). Sets MPI_ERRORS_RETURN so failures become MpiError.
  static MpiComm world();
  /// Takes ownership of `comm` (freed on destruction).
  static MpiComm adopt(MPI_Comm comm);

  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  MpiComm(MpiComm&& other) noexcept;
  MpiComm& operator=(MpiComm&& other) noexcept;
  ~MpiComm();

  MPI_Comm get() const noexcept { return comm_; }
  bool valid() const noexcept { return comm_ != MPI_COMM_NULL; }
  int rank() const;
  int size() const;

  /// Collective: ranks with equal `color` form a new communicator ordered by `key`.
  MpiComm split(int color, int key) const;
  /// Collective: the ranks that share this node's memory (MPI_COMM_TYPE_SHARED).
  MpiComm split_node_local() const;
  /// Collective: a duplicate with its own message context.
  MpiComm dup() const;

  /// Ends every process of this communicator's job (MPI_Abort); for when peers would hang.
  [[noreturn]] void abort(int exit_code) const noexcept;

 private:
  MpiComm(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {}
  void release() noexcept;

  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owned_ = false;
};

}  // namespace vitruvian
