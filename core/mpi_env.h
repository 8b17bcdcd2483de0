// The process's MPI environment: init with MPI_THREAD_MULTIPLE (reporting what was granted),
// world and node-local ranks, host name, finalize. A process started without mpirun is a
// 1-rank world. Also pins glibc's malloc thresholds so large message buffers stay mapped.
#pragma once

#include <string>

#include "core/mpi.h"

namespace vitruvian {

/// "MPI_THREAD_MULTIPLE" etc. for a thread level.
const char* thread_level_name(int level);

/// RAII owner of MPI for this process. Construct once in main(); not copyable or movable.
/// Keeps glibc from serving buffers up to 32 MiB with fresh mappings that are unmapped on free
/// (and page-faulted again on every reuse): pins M_MMAP_THRESHOLD at 32 MiB and M_TRIM_THRESHOLD
/// at 1 GiB. MpiEnvironment calls it first thing; programs without one (benchmarks) call it
/// themselves. Skipped, returning false, when VITRUVIAN_MALLOC_TUNING=0 or when the user set
/// MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_. Unless VITRUVIAN_MALLOC_TUNING=0, it also
/// puts tensors of 2 MiB and more on huge pages (install_huge_page_allocator).
bool pin_malloc_thresholds();

class MpiEnvironment {
 public:
  /// Initializes MPI (MPI_Init_thread asking for MPI_THREAD_MULTIPLE) unless it already is, in
  /// which case this object borrows it and does not finalize. Records the process identity.
  MpiEnvironment(int* argc, char*** argv);
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;
  /// Finalizes MPI if this object initialized it. Never throws.
  ~MpiEnvironment();

  const MpiComm& world() const noexcept { return world_; }
  /// Ranks on this node (MPI_COMM_TYPE_SHARED), for device choice and hierarchical schemes.
  const MpiComm& node_local() const noexcept { return node_local_; }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  int local_rank() const noexcept { return local_rank_; }
  int local_size() const noexcept { return local_size_; }
  const std::string& host() const noexcept { return host_; }

  int thread_level_requested() const noexcept { return requested_; }
  int thread_level_provided() const noexcept { return provided_; }
  /// True when background threads may call MPI (async collectives).
  bool thread_multiple() const noexcept { return provided_ >= MPI_THREAD_MULTIPLE; }
  /// The MPI library's version string, first line (e.g. "Open MPI v4.1.4, ...").
  std::string library_version() const;
  /// MPI standard version "3.1".
  std::string standard_version() const;

  /// True if start-up pinned glibc's malloc thresholds (see mpi_env.cpp); false if the user set
  /// MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ or VITRUVIAN_MALLOC_TUNING=0.
  bool malloc_pinned() const noexcept { return malloc_pinned_; }

  /// Ends the whole job from any thread (MPI_Abort on world). Never returns.
  [[noreturn]] void abort(int exit_code) const noexcept { world_.abort(exit_code); }

 private:
  bool owns_mpi_ = false;
  bool malloc_pinned_ = false;
  int requested_ = MPI_THREAD_MULTIPLE;
  int provided_ = MPI_THREAD_SINGLE;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::string host_;
  MpiComm world_;
  MpiComm node_local_;
};

}  // namespace vitruvian
