// MPI error checking and the MpiComm handle.
#include "core/mpi.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

#include "core/errors.h"

namespace vitruvian {

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "unknown MPI error";
  return std::string(text, static_cast<size_t>(length));
}

void check_mpi(int code, const char* call) {
  if (code != MPI_SUCCESS) throw MpiError(call, code, mpi_error_string(code));
}

bool mpi_is_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

MpiComm MpiComm::world() {
  check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler(MPI_COMM_WORLD)");
  return MpiComm(MPI_COMM_WORLD, false);
}

MpiComm MpiComm::adopt(MPI_Comm comm) {
  if (comm != MPI_COMM_NULL) {
    check_mpi(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  }
  return MpiComm(comm, true);
}

MpiComm::MpiComm(MpiComm&& other) noexcept : comm_(other.comm_), owned_(other.owned_) {
  other.comm_ = MPI_COMM_NULL;
  other.owned_ = false;
}

MpiComm& MpiComm::operator=(MpiComm&& other) noexcept {
  if (this != &other) {
    release();
    comm_ = other.comm_;
    owned_ = other.owned_;
    other.comm_ = MPI_COMM_NULL;
    other.owned_ = false;
  }
  return *this;
}

MpiComm::~MpiComm() { release(); }

void MpiComm::release() noexcept {
  if (owned_ && comm_ != MPI_COMM_NULL && mpi_is_active()) {
    const int code = MPI_Comm_free(&comm_);
    if (code != MPI_SUCCESS) spdlog::warn("MPI_Comm_free failed: {}", mpi_error_string(code));
  }
  comm_ = MPI_COMM_NULL;
  owned_ = false;
}

int MpiComm::rank() const {
  int rank = 0;
  check_mpi(MPI_Comm_rank(comm_, &rank), "MPI_Comm_rank");
  return rank;
}

int MpiComm::size() const {
  int size = 0;
  check_mpi(MPI_Comm_size(comm_, &size), "MPI_Comm_size");
  return size;
}

MpiComm MpiComm::split(int color, int key) const {
  MPI_Comm out = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(comm_, color, key, &out), "MPI_Comm_split");
  return adopt(out);
}

MpiComm MpiComm::split_node_local() const {
  MPI_Comm out = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank(), MPI_INFO_NULL, &out),
            "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
  return adopt(out);
}

MpiComm MpiComm::dup() const {
  MPI_Comm out = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(comm_, &out), "MPI_Comm_dup");
  return adopt(out);
}

void MpiComm::abort(int exit_code) const noexcept {
  spdlog::default_logger()->flush();
  MPI_Abort(comm_ == MPI_COMM_NULL ? MPI_COMM_WORLD : comm_, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this is for a broken MPI.
}

}  // namespace vitruvian
