// Where a PACS answers and what to ask it for: the campaign keys `source: {pacs: ...}` and
// `store_to: ...`, declared once through visit(), and the credentials a DICOMweb server needs,
// read from the environment or a private file (never from the campaign's YAML).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/config.h"

namespace vitruvian::pacs {

/// A PACS as a DIMSE peer (host, port, AE titles) or a DICOMweb server (url).
struct PacsEndpoint {
  std::string protocol;  ///< dimse | dicomweb; empty: no PACS
  std::string host;      ///< DIMSE: the PACS's host name or address
  std::int64_t port = 104;
  std::string aet = "VITRUVIAN";  ///< DIMSE: our calling AE title (the PACS must know it)
  std::string called_aet;         ///< DIMSE: the PACS's AE title
  std::string url;                ///< DICOMweb: the service root, e.g. http://pacs:8042/dicom-web
  double timeout_s = 60;          ///< per network operation (connect, each DIMSE message, each HTTP request)
  /// DICOMweb: a file (mode 0600) with `user:`/`password:` or `token:`; else the environment's
  /// VITRUVIAN_PACS_USER/VITRUVIAN_PACS_PASSWORD or VITRUVIAN_PACS_TOKEN.
  std::filesystem::path credentials_file;

  void visit(ConfigVisitor& v);
  bool enabled() const { return !protocol.empty(); }
  /// ConfigError naming `key` (e.g. "source.pacs") and the bad value.
  void validate(const std::string& key) const;
  /// "DIMSE VITRUVIAN -> ORTHANC at 127.0.0.1:4242" or "DICOMweb http://...": for messages.
  std::string describe() const;
};

/// Which studies to take (study-level C-FIND / QIDO-RS keys); empty fields match everything.
struct StudyQuery {
  std::string modality;                 ///< ModalitiesInStudy, e.g. CT
  std::string study_date;               ///< StudyDate: YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end open)
  std::string accession;                ///< AccessionNumber
  std::vector<std::string> study_uids;  ///< StudyInstanceUIDs (any of them)

  void visit(ConfigVisitor& v);
  void validate(const std::string& key) const;
};

/// `source.pacs`: the endpoint and the query.
struct PacsSourceConfig : PacsEndpoint {
  StudyQuery query;
  void visit(ConfigVisitor& v);
};

/// DICOMweb credentials: basic auth (user, password) or a bearer token; all empty: none.
struct Credentials {
  std::string user, password, token;
  bool empty() const { return user.empty() && token.empty(); }
};

/// The credentials for `endpoint`: its credentials_file when given (ConfigError when the file
/// is readable by group or others, unreadable, or holds neither user/password nor token), else
/// the environment (VITRUVIAN_PACS_USER + VITRUVIAN_PACS_PASSWORD, or VITRUVIAN_PACS_TOKEN).
Credentials load_credentials(const PacsEndpoint& endpoint);

}  // namespace vitruvian::pacs
