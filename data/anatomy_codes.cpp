// The structure-name → SNOMED CT table behind DICOM SEG segments and SR findings.
#include "data/anatomy_codes.h"

#include <algorithm>

namespace vitruvian::data {
namespace {

const CodedConcept kAnatomical{"91723000", "SCT", "Anatomical Structure"};
const CodedConcept kAltered{"49755003", "SCT", "Morphologically Altered Structure"};
const CodedConcept kLeft{"7771000", "SCT", "Left"};
const CodedConcept kRight{"24028007", "SCT", "Right"};

AnatomyCode anatomy(const char* value, const char* meaning, bool checked = true) {
  return {kAnatomical, {value, "SCT", meaning}, checked, std::nullopt};
}
AnatomyCode sided(const char* value, const char* meaning, const CodedConcept& side) {
  AnatomyCode code = anatomy(value, meaning);
  code.modifier = side;
  return code;
}
AnatomyCode altered(const char* value, const char* meaning, bool checked = true) {
  return {kAltered, {value, "SCT", meaning}, checked, std::nullopt};
}

}  // namespace

const std::vector<std::pair<std::string, AnatomyCode>>& anatomy_codes() {
  // Names: the phantoms' label table (data/phantom_kinds.cpp) and the classes the example
  // configurations group (heart, lung, kidney). `false`: code not confirmed (docs/INFERENCE.md).
  // Confirmed in DICOM PS3.16: coronary arteries (CID 3016), vertebrae (CID 7603), spine, rib,
  // sternum (CID 6114), heart, aorta, ventricles (CID 7152); in a published SEG mapping: the
  // rest marked confirmed.
  static const std::vector<std::pair<std::string, AnatomyCode>> table = {
      {"body", anatomy("38266002", "Entire body", false)},
      {"lung", anatomy("39607008", "Lung", false)},
      {"lung_left", anatomy("44029006", "Left lung")},
      {"lung_right", anatomy("3341006", "Right lung")},
      {"heart", anatomy("80891009", "Heart")},
      {"heart_left_ventricle", anatomy("87878005", "Left ventricle")},
      {"heart_right_ventricle", anatomy("53085002", "Right ventricle")},
      {"heart_left_atrium", anatomy("82471001", "Left atrium")},
      {"heart_right_atrium", anatomy("73829009", "Right atrium")},
      {"heart_myocardium", anatomy("74281007", "Myocardium")},
      {"aorta", anatomy("15825003", "Aorta")},
      {"aorta_ascending", anatomy("54247002", "Ascending aorta", false)},
      {"aorta_arch", anatomy("57034009", "Aortic arch")},
      {"aorta_descending", anatomy("32672002", "Descending aorta", false)},
      {"pulmonary_artery", anatomy("81040000", "Pulmonary artery")},
      {"coronary_lad", anatomy("59438005", "Left anterior descending coronary artery")},
      {"coronary_lcx", anatomy("57396003", "Circumflex coronary artery")},
      {"coronary_rca", anatomy("13647002", "Right coronary artery")},
      {"vertebrae", anatomy("421060004", "Spine")},
      {"ribs", anatomy("113197003", "Rib")},
      {"sternum", anatomy("56873002", "Sternum")},
      {"lung_nodule", altered("27925004", "Nodule", false)},
      {"coronary_calcification", altered("18115005", "Calcification", false)},
      {"brain", anatomy("12738006", "Brain")},
      {"ventricles", anatomy("35764002", "Cerebral ventricle", false)},
      {"skull", anatomy("89546000", "Skull")},
      {"carotid_arteries", anatomy("69105007", "Carotid artery", false)},
      {"vertebral_arteries", anatomy("85234005", "Vertebral artery", false)},
      {"circle_of_willis", anatomy("11279006", "Circle of Willis", false)},
      {"dural_sinus", anatomy("6217003", "Superior sagittal sinus", false)},
      {"ischemic_core", altered("55641003", "Infarct", false)},
      {"ischemic_penumbra", altered("52674009", "Ischemia", false)},
      {"liver", anatomy("10200004", "Liver")},
      {"hepatic_veins", anatomy("8993003", "Hepatic vein", false)},
      {"portal_vein", anatomy("32764006", "Portal vein", false)},
      {"liver_lesion", altered("52988006", "Lesion", false)},
      {"spleen", anatomy("78961009", "Spleen")},
      {"kidney", anatomy("64033007", "Kidney")},
      {"kidney_left", sided("64033007", "Kidney", kLeft)},
      {"kidney_right", sided("64033007", "Kidney", kRight)},
      {"inferior_vena_cava", anatomy("64131007", "Inferior vena cava")},
      {"vertebra_T11", anatomy("12989004", "T11 vertebra")},
      {"vertebra_T12", anatomy("23215003", "T12 vertebra")},
      {"vertebra_L1", anatomy("66794005", "L1 vertebra")},
      {"vertebra_L2", anatomy("14293000", "L2 vertebra")},
      {"vertebra_L3", anatomy("36470004", "L3 vertebra")},
      {"vertebra_L4", anatomy("11994002", "L4 vertebra")},
      {"vertebra_L5", anatomy("49668003", "L5 vertebra")},
      {"sacrum", anatomy("54735007", "Sacrum")},
      {"hip_left", sided("29836001", "Hip", kLeft)},
      {"hip_right", sided("29836001", "Hip", kRight)},
      {"femur_left", sided("71341001", "Femur", kLeft)},
      {"femur_right", sided("71341001", "Femur", kRight)},
  };
  return table;
}

AnatomyCode anatomy_code(const std::string& name, bool* known) {
  const auto& table = anatomy_codes();
  const auto it = std::find_if(table.begin(), table.end(), [&](const auto& entry) { return entry.first == name; });
  if (known != nullptr) *known = it != table.end();
  if (it != table.end()) return it->second;
  return {kAnatomical, {"91723000", "SCT", "Anatomical structure"}, false, std::nullopt};
}

}  // namespace vitruvian::data
