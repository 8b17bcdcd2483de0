// The client factory and the image/non-image test of a retrieved object.
#include "launch/pacs/pacs_client.h"

#include <dcmtk/config/osconfig.h>  // first: DCMTK's configuration
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <cstring>
#include <set>

namespace vitruvian::pacs {

std::unique_ptr<PacsClient> make_pacs_client(const PacsEndpoint& endpoint) {
  endpoint.validate("pacs");
  if (endpoint.protocol == "dimse") return make_dimse_client(endpoint);
  return make_dicomweb_client(endpoint, load_credentials(endpoint));
}

bool is_image_object(const std::filesystem::path& file, std::string& kind) {
  DcmFileFormat format;
  kind = "unreadable";
  if (format.loadFile(file.string().c_str(), EXS_Unknown, EGL_noChange, 256).bad()) return false;
  DcmDataset& data = *format.getDataset();
  OFString modality, sop_class;
  data.findAndGetOFString(DCM_Modality, modality);
  data.findAndGetOFString(DCM_SOPClassUID, sop_class);
  kind = modality.empty() ? sop_class.c_str() : modality.c_str();
  // Objects with pixel data that are not images of the patient: segmentations, dose grids.
  static const std::set<std::string> not_images{"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "DOC"};
  if (not_images.count(modality.c_str()) != 0 || !data.tagExists(DCM_PixelData)) return false;
  for (int i = 0; i < numberOfDcmImageSOPClassUIDs; ++i) {
    if (dcmImageSOPClassUIDs[i] != nullptr && sop_class == dcmImageSOPClassUIDs[i]) return true;
  }
  return false;
}

}  // namespace vitruvian::pacs
