// C-FIND responses (DIMSE): the input's first byte picks the presentation context's transfer
// syntax (implicit or explicit little endian, the two the client proposes), the rest is the
// response identifier as it arrives in the data set PDVs. DCMTK reads it into a data set, as
// DcmSCU does, and the client's parse step turns it into a StudyMatch.
#include <dcmtk/config/osconfig.h>  // first: DCMTK's configuration
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/oflog/oflog.h>

#include <cstdint>

#include "launch/pacs/query_results.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vitruvian;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const E_TransferSyntax syntax = (data[0] & 1) != 0 ? EXS_LittleEndianExplicit : EXS_LittleEndianImplicit;
  DcmInputBufferStream stream;
  stream.setBuffer(data + 1, static_cast<offile_off_t>(size - 1));
  stream.setEos();
  DcmDataset identifier;
  identifier.transferInit();
  const OFCondition read = identifier.read(stream, syntax);
  identifier.transferEnd();
  if (read.bad()) return 0;  // DcmSCU drops a response whose data set does not read
  fuzz::expect_typed_errors([&] { pacs::study_match_of(identifier); });
  return 0;
}
