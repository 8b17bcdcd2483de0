// Results back into the PACS: every DICOM file (*.dcm) a committed study's outputs hold, sent
// to the `store_to` PACS (C-STORE / STOW-RS) into the study it came from (the files carry its
// StudyInstanceUID). Their SOP Instance UIDs are deterministic, so a second push of the same
// outputs leaves the PACS as it was.
#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "launch/pacs/pacs_client.h"

namespace vitruvian::campaign {

class PacsStore {
 public:
  /// Checks at once that the PACS answers (C-ECHO / QIDO-RS); PacsError otherwise.
  explicit PacsStore(pacs::PacsEndpoint endpoint);

  /// The *.dcm files directly in `study_dir`, in name order.
  static std::vector<std::filesystem::path> files_of(const std::filesystem::path& study_dir);
  /// Sends files_of(study_dir); returns how many. PacsError (with the PACS's status) when it
  /// refuses one; the local files stay.
  std::size_t push(const std::filesystem::path& study_dir) const;

 private:
  pacs::PacsEndpoint endpoint_;
};

}  // namespace vitruvian::campaign
