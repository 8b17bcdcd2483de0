// Error types and the process identity they carry.
#include "core/errors.h"

#include <utility>

namespace vitruvian {
namespace {
ProcessIdentity& identity_storage() {
  static ProcessIdentity identity;
  return identity;
}
}  // namespace

void set_process_identity(ProcessIdentity identity) { identity_storage() = std::move(identity); }

const ProcessIdentity& process_identity() { return identity_storage(); }

std::string describe_process() {
  const ProcessIdentity& id = process_identity();
  std::string text = id.rank < 0 ? std::string("rank ?") : "rank " + std::to_string(id.rank) + "/" + std::to_string(id.world_size);
  if (!id.host.empty()) text += " on " + id.host;
  return text;
}

namespace {
/// what() is one line whatever the input put into it (a file name, a YAML key, a library's
/// message quoting a bad character): line breaks become spaces, other control characters '?'.
std::string format_error(const std::string& kind, const std::string& call, const std::string& detail) {
  std::string text = kind + " on " + describe_process() + ": ";
  if (!call.empty()) text += call + ": ";
  text += detail;
  for (char& c : text) {
    if (c == '\n' || c == '\r') {
      c = ' ';
    } else if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
      c = '?';
    }
  }
  return text;
}
}  // namespace

Error::Error(const std::string& kind, const std::string& call, const std::string& detail)
    : std::runtime_error(format_error(kind, call, detail)),
      kind_(kind),
      call_(call),
      detail_(detail),
      host_(process_identity().host),
      rank_(process_identity().rank) {}

MpiError::MpiError(const std::string& call, int code, const std::string& library_message)
    : Error("MpiError", call, library_message + " (MPI error code " + std::to_string(code) + ")"), code_(code) {}

NcclError::NcclError(const std::string& call, int code, const std::string& library_message)
    : Error("NcclError", call, library_message + " (ncclResult_t " + std::to_string(code) + ")"), code_(code) {}

CudaError::CudaError(const std::string& call, int code, const std::string& library_message)
    : Error("CudaError", call, library_message + " (cudaError_t " + std::to_string(code) + ")"), code_(code) {}

namespace detail {
void throw_internal(const char* file, int line, const char* condition, const std::string& message) {
  throw InternalError(std::string(file) + ":" + std::to_string(line),
                      "invariant '" + std::string(condition) + "' broken: " + message);
}
}  // namespace detail

}  // namespace vitruvian
