// The Orthanc that pacs_clients.sh started (tests/tools/orthanc.sh exports where it listens), as
// the PACS clients' endpoint.
#pragma once

#include <cstdlib>
#include <string>

#include "launch/pacs/pacs_config.h"

namespace vitruvian::pacs::orthanc_test {

inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

/// Orthanc over `protocol` ("dimse" or "dicomweb"), as the calling AE title it knows.
inline PacsEndpoint orthanc_endpoint(const std::string& protocol) {
  PacsEndpoint e;
  e.protocol = protocol;
  e.host = "127.0.0.1";
  e.port = std::stoll(env("ORTHANC_DICOM_PORT"));
  e.aet = env("ORTHANC_SCU_AET");
  e.called_aet = env("ORTHANC_AET");
  e.url = env("ORTHANC_URL");
  e.timeout_s = 10;
  return e;
}

}  // namespace vitruvian::pacs::orthanc_test
