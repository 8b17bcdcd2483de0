// Sending a study's DICOM outputs to the store_to PACS.
#include "launch/campaign/pacs_store.h"

#include <algorithm>

namespace vitruvian::campaign {

namespace fs = std::filesystem;

PacsStore::PacsStore(pacs::PacsEndpoint endpoint) : endpoint_(std::move(endpoint)) {
  pacs::make_pacs_client(endpoint_)->echo();
}

std::vector<fs::path> PacsStore::files_of(const fs::path& study_dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(study_dir)) {
    if (e.is_regular_file() && e.path().extension() == ".dcm") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::size_t PacsStore::push(const fs::path& study_dir) const {
  const auto files = files_of(study_dir);
  pacs::make_pacs_client(endpoint_)->store(files);
  return files.size();
}

}  // namespace vitruvian::campaign
