// Typed exceptions that say where and why: rank, host, the failing call and the library's own
// message. Bad user input (InputError, ConfigError) and broken invariants (InternalError) differ.
#pragma once

#include <stdexcept>
#include <string>

namespace vitruvian {

/// Identity of this process, stamped into every error. Set once by MpiEnvironment; -1/"" before.
struct ProcessIdentity {
  int rank = -1;
  int world_size = 0;
  std::string host;
};

/// Records the identity used by later errors and log lines (called by MpiEnvironment).
void set_process_identity(ProcessIdentity identity);
/// The identity recorded so far (rank -1 before MPI is up).
const ProcessIdentity& process_identity();
/// "rank 1/3 on node-a", or "rank ? on node-a" before MPI is up.
std::string describe_process();

/// Base of every Vitruvian error. what() is one line:
///   "<Kind> on rank R/N (host): <call>: <detail>"
class Error : public std::runtime_error {
 public:
  Error(const std::string& kind, const std::string& call, const std::string& detail);
  const std::string& kind() const noexcept { return kind_; }
  const std::string& call() const noexcept { return call_; }
  const std::string& detail() const noexcept { return detail_; }
  int rank() const noexcept { return rank_; }
  const std::string& host() const noexcept { return host_; }

 private:
  std::string kind_, call_, detail_, host_;
  int rank_;
};

/// An MPI call returned an error; code() is the MPI error code.
class MpiError : public Error {
 public:
  MpiError(const std::string& call, int code, const std::string& library_message);
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// An NCCL call failed; code() is the ncclResult_t value.
class NcclError : public Error {
 public:
  NcclError(const std::string& call, int code, const std::string& library_message);
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// A CUDA runtime call failed; code() is the cudaError_t value.
class CudaError : public Error {
 public:
  CudaError(const std::string& call, int code, const std::string& library_message);
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// An HDF5 call failed; the detail carries the walked HDF5 error stack.
class Hdf5Error : public Error {
 public:
  Hdf5Error(const std::string& call, const std::string& library_message)
      : Error("Hdf5Error", call, library_message) {}
};

/// A configuration file or override is wrong: unknown key, bad value, unreadable file.
class ConfigError : public Error {
 public:
  ConfigError(const std::string& where, const std::string& detail) : Error("ConfigError", where, detail) {}
};

/// Bad user input: an argument, a tensor of the wrong shape or dtype, a missing file.
class InputError : public Error {
 public:
  InputError(const std::string& where, const std::string& detail) : Error("InputError", where, detail) {}
};

/// A broken internal invariant: a bug in Vitruvian, never the user's fault.
class InternalError : public Error {
 public:
  InternalError(const std::string& where, const std::string& detail) : Error("InternalError", where, detail) {}
};

/// A wait on other ranks outlived its limit (runtime.collective_timeout_s) and the timeout
/// handler returned instead of ending the job (as tests' handlers do).
class TimeoutError : public Error {
 public:
  TimeoutError(const std::string& where, const std::string& detail) : Error("TimeoutError", where, detail) {}
};

namespace detail {
[[noreturn]] void throw_internal(const char* file, int line, const char* condition, const std::string& message);
}  // namespace detail

}  // namespace vitruvian

/// Checks an internal invariant (always evaluated, also in release builds). For user input,
/// throw InputError or ConfigError with a message that names the bad value instead.
#define VITRUVIAN_INTERNAL_ASSERT(cond, message)                                     \
  do {                                                                               \
    if (!(cond)) ::vitruvian::detail::throw_internal(__FILE__, __LINE__, #cond, (message)); \
  } while (0)
