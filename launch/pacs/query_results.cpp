// QIDO-RS DICOM JSON and C-FIND identifiers into StudyMatch.
#include "launch/pacs/query_results.h"

#include <dcmtk/config/osconfig.h>  // first: DCMTK's configuration
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

namespace vitruvian::pacs {
namespace {

using json = nlohmann::json;

std::string text_of(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  item.findAndGetOFStringArray(tag, value);
  return value.c_str();
}

}  // namespace

std::string dicom_json_value(const json& item, const char* tag) {
  if (!item.is_object()) return "";
  const auto attribute = item.find(tag);
  if (attribute == item.end() || !attribute->is_object()) return "";
  const auto values = attribute->find("Value");
  if (values == attribute->end() || !values->is_array() || values->empty()) return "";
  const json& v = values->front();
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_unsigned()) return std::to_string(v.get<std::uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_number_float()) return fmt::format("{}", v.get<double>());
  return "";
}

std::vector<StudyMatch> parse_qido_studies(const std::string& body, const std::string& where) {
  json list;
  try {
    list = json::parse(body);
  } catch (const json::exception& e) {
    throw PacsError(where, std::string("QIDO-RS answer is not DICOM JSON: ") + e.what());
  }
  if (!list.is_array()) throw PacsError(where, "QIDO-RS answer is not a DICOM JSON array of studies");
  std::vector<StudyMatch> matches;
  for (const auto& item : list) {
    StudyMatch m;
    m.study_uid = dicom_json_value(item, "0020000D");
    m.patient_id = dicom_json_value(item, "00100020");
    m.accession = dicom_json_value(item, "00080050");
    m.study_date = dicom_json_value(item, "00080020");
    const auto modalities = item.is_object() ? item.find("00080061") : item.end();
    if (modalities != item.end() && modalities->is_object() && modalities->contains("Value")) {
      for (const auto& v : (*modalities)["Value"]) {
        if (!v.is_string()) {
          throw PacsError(where, fmt::format("QIDO-RS answer: study '{}' lists a modality that is not text ({})",
                                             m.study_uid, v.dump()));
        }
        m.modalities += (m.modalities.empty() ? "" : "\\") + v.get<std::string>();
      }
    }
    const std::string n = dicom_json_value(item, "00201208");
    if (!n.empty()) {
      const auto [end, error] = std::from_chars(n.data(), n.data() + n.size(), m.instances);
      if (error != std::errc() || end != n.data() + n.size() || m.instances < 0) {
        throw PacsError(where, fmt::format("QIDO-RS answer: study '{}' has NumberOfStudyRelatedInstances '{}'; "
                                           "expected a count",
                                           m.study_uid, n));
      }
    }
    if (!m.study_uid.empty()) matches.push_back(std::move(m));
  }
  return matches;
}

StudyMatch study_match_of(DcmItem& identifier) {
  StudyMatch m;
  m.study_uid = text_of(identifier, DCM_StudyInstanceUID);
  m.patient_id = text_of(identifier, DCM_PatientID);
  m.accession = text_of(identifier, DCM_AccessionNumber);
  m.study_date = text_of(identifier, DCM_StudyDate);
  m.modalities = text_of(identifier, DCM_ModalitiesInStudy);
  Sint32 n = 0;
  if (identifier.findAndGetSint32(DCM_NumberOfStudyRelatedInstances, n).good()) m.instances = n;
  return m;
}

}  // namespace vitruvian::pacs
