// QIDO-RS answers (DICOM JSON): the body of a study query, parsed as the DICOMweb client does.
#include <cstdint>
#include <string>

#include "launch/pacs/query_results.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vitruvian;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  fuzz::expect_typed_errors([&] {
    for (const auto& match : pacs::parse_qido_studies(body, "DICOMweb http://pacs.invalid")) {
      if (match.study_uid.empty()) fuzz::finding("a study without a StudyInstanceUID");
    }
  });
  return 0;
}
