// One interface to a PACS, two protocols: DIMSE (DCMTK's DcmSCU: C-ECHO, study-level C-FIND,
// C-GET, C-STORE) and DICOMweb (libcurl: QIDO-RS, WADO-RS, STOW-RS). A client opens a fresh
// association or connection per call, so calls from two threads on two clients do not meet.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "launch/pacs/pacs_config.h"

namespace vitruvian::pacs {

/// The PACS could not be reached, refused the association or the request, or answered with a
/// failure. what() names the PACS (host, port, AE titles or URL) and the peer's reason;
/// status() is the DIMSE status or HTTP status when there was one (0 otherwise).
class PacsError : public Error {
 public:
  PacsError(const std::string& where, const std::string& detail, int status = 0)
      : Error("PacsError", where, detail), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

/// A study as the PACS lists it.
struct StudyMatch {
  std::string study_uid;
  std::string patient_id;
  std::string accession;
  std::string study_date;
  std::string modalities;      ///< ModalitiesInStudy, backslash-separated
  std::int64_t instances = 0;  ///< NumberOfStudyRelatedInstances (0 when the PACS does not say)
};

class PacsClient {
 public:
  virtual ~PacsClient() = default;
  /// "DIMSE VITRUVIAN -> ORTHANC at host:port" / "DICOMweb URL".
  virtual std::string describe() const = 0;
  /// Checks that the PACS answers and accepts us (C-ECHO; DICOMweb: a one-study QIDO-RS with
  /// the credentials). PacsError with the peer's reason otherwise.
  virtual void echo() = 0;
  /// The studies matching `query`, in StudyInstanceUID order, each once.
  virtual std::vector<StudyMatch> find_studies(const StudyQuery& query) = 0;
  /// Every instance of the study into `folder` (created; one file per instance); returns the
  /// files. PacsError when the study cannot be retrieved or holds nothing.
  virtual std::vector<std::filesystem::path> retrieve_study(const std::string& study_uid,
                                                            const std::filesystem::path& folder) = 0;
  /// Sends the DICOM files (C-STORE each / one STOW-RS request). PacsError with the status of
  /// the first instance the PACS refused. Storing an instance again (same SOP Instance UID)
  /// leaves one copy in the PACS.
  virtual void store(const std::vector<std::filesystem::path>& files) = 0;
};

/// The client for `endpoint.protocol` (validated), with its credentials loaded.
std::unique_ptr<PacsClient> make_pacs_client(const PacsEndpoint& endpoint);

std::unique_ptr<PacsClient> make_dimse_client(const PacsEndpoint& endpoint);
std::unique_ptr<PacsClient> make_dicomweb_client(const PacsEndpoint& endpoint, Credentials credentials);

/// Whether a DICOM file holds an image (pixel data of an image storage class) rather than a
/// structured report, presentation state, segmentation, key object or other non-image object;
/// `kind` receives its Modality (or SOP class) for notes.
bool is_image_object(const std::filesystem::path& file, std::string& kind);

}  // namespace vitruvian::pacs
