// The parse step of a study query's answers, apart from the exchange that brings them: QIDO-RS's
// DICOM JSON (DICOMweb) and C-FIND's response identifiers (DIMSE), each into StudyMatch.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "launch/pacs/pacs_client.h"

class DcmItem;  // DCMTK's dataset item (dcmtk/dcmdata/dcitem.h)

namespace vitruvian::pacs {

/// The first value of a DICOM JSON attribute `tag` ("0020000D") of `item`, as text ("" when
/// absent, empty or neither a string nor a number).
std::string dicom_json_value(const nlohmann::json& item, const char* tag);

/// The studies a QIDO-RS answer lists (a DICOM JSON array of study objects), in the answer's
/// order; objects without a StudyInstanceUID are left out. PacsError naming `where` (the PACS)
/// when the body is not a DICOM JSON array, or a study's ModalitiesInStudy holds something other
/// than text or its NumberOfStudyRelatedInstances is not a count.
std::vector<StudyMatch> parse_qido_studies(const std::string& body, const std::string& where);

/// The study a C-FIND response identifier describes (study_uid "" when it names none).
StudyMatch study_match_of(DcmItem& identifier);

}  // namespace vitruvian::pacs
