// MpiEnvironment: MPI init/finalize, ranks and host.
#include "core/mpi_env.h"

#include <spdlog/spdlog.h>

#include "core/errors.h"

namespace vitruvian {

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
    default: return "unknown MPI thread level";
  }
}

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  int initialized = 0;
  check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
  if (initialized) {
    check_mpi(MPI_Query_thread(&provided_), "MPI_Query_thread");
  } else {
    check_mpi(MPI_Init_thread(argc, argv, requested_, &provided_), "MPI_Init_thread");
    owns_mpi_ = true;
  }
  world_ = MpiComm::world();
  rank_ = world_.rank();
  size_ = world_.size();

  char name[MPI_MAX_PROCESSOR_NAME];
  int length = 0;
  check_mpi(MPI_Get_processor_name(name, &length), "MPI_Get_processor_name");
  host_.assign(name, static_cast<size_t>(length));
  set_process_identity({rank_, size_, host_});

  node_local_ = world_.split_node_local();
  local_rank_ = node_local_.rank();
  local_size_ = node_local_.size();
}

MpiEnvironment::~MpiEnvironment() {
  node_local_ = MpiComm();
  if (owns_mpi_ && mpi_is_active()) {
    const int code = MPI_Finalize();
    if (code != MPI_SUCCESS) spdlog::error("MPI_Finalize failed: {}", mpi_error_string(code));
  }
}

std::string MpiEnvironment::library_version() const {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  check_mpi(MPI_Get_library_version(text, &length), "MPI_Get_library_version");
  std::string version(text, static_cast<size_t>(length));
  const auto cut = version.find_first_of(",\n");
  return cut == std::string::npos ? version : version.substr(0, cut);
}

std::string MpiEnvironment::standard_version() const {
  int major = 0, minor = 0;
  check_mpi(MPI_Get_version(&major, &minor), "MPI_Get_version");
  return std::to_string(major) + "." + std::to_string(minor);
}

}  // namespace vitruvian
