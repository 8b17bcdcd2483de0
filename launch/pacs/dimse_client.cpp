// The DIMSE client: C-ECHO through DCMTK's association calls (so a rejection carries the
// peer's reason), study-level C-FIND, C-GET and C-STORE through DcmSCU, one association per call.
#include <dcmtk/config/osconfig.h>  // first: DCMTK's configuration
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/scu.h>
#include <dcmtk/oflog/oflog.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>

#include "launch/pacs/pacs_client.h"
#include "launch/pacs/query_results.h"

namespace vitruvian::pacs {
namespace {

namespace fs = std::filesystem;

/// One line of DCMTK's multi-line text.
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

OFList<OFString> uncompressed_syntaxes() {
  OFList<OFString> ts;
  ts.push_back(UID_LittleEndianExplicitTransferSyntax);
  ts.push_back(UID_LittleEndianImplicitTransferSyntax);
  return ts;
}

/// A DcmSCU whose C-GET stores each received object as <folder>/<n>.dcm.
class RetrievingScu final : public DcmSCU {
 public:
  std::vector<fs::path> received;

 protected:
  OFString createStorageFilename(DcmDataset*) override {
    received.push_back(fs::path(getStorageDir().c_str()) / fmt::format("{:06d}.dcm", received.size()));
    return received.back().string().c_str();
  }
};

class DimseClient final : public PacsClient {
 public:
  explicit DimseClient(PacsEndpoint endpoint) : e_(std::move(endpoint)) {
    // DcmSCU logs each step at info level; what matters reaches the caller in a PacsError. DCMTK
    // keeps Nagle's algorithm on unless TCP_NODELAY says otherwise, which costs a delayed-ACK
    // wait (40 ms) per small message: off here unless the environment sets it.
    static std::once_flag once;
    std::call_once(once, [] {
      OFLog::getLogger("dcmtk.dcmnet").setLogLevel(OFLogger::FATAL_LOG_LEVEL);
      setenv("TCP_NODELAY", "1", 0);
    });
  }

  std::string describe() const override { return e_.describe(); }

  void echo() override;
  std::vector<StudyMatch> find_studies(const StudyQuery& query) override;
  std::vector<fs::path> retrieve_study(const std::string& study_uid, const fs::path& folder) override;
  void store(const std::vector<fs::path>& files) override;

 private:
  int timeout() const { return std::max(1, static_cast<int>(e_.timeout_s + 0.5)); }
  void configure(DcmSCU& scu) const {
    scu.setAETitle(e_.aet.c_str());
    scu.setPeerAETitle(e_.called_aet.c_str());
    scu.setPeerHostName(e_.host.c_str());
    scu.setPeerPort(static_cast<Uint16>(e_.port));
    scu.setConnectionTimeout(timeout());
    scu.setACSETimeout(static_cast<Uint32>(timeout()));
    scu.setDIMSETimeout(static_cast<Uint32>(timeout()));
    scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    scu.setMaxReceivePDULength(ASC_DEFAULTMAXPDU);
  }
  /// Opens the association of `scu` (its contexts added); PacsError naming what failed.
  void connect(DcmSCU& scu, const std::string& what) const {
    OFCondition cond = scu.initNetwork();
    if (cond.good()) cond = scu.negotiateAssociation();
    if (cond.bad()) throw PacsError(describe(), fmt::format("{}: {}", what, one_line(cond.text())));
  }
  [[noreturn]] void fail(DcmSCU& scu, const std::string& what, const OFCondition& cond) const {
    scu.abortAssociation();
    throw PacsError(describe(), fmt::format("{}: {}", what, one_line(cond.text())));
  }
  std::vector<StudyMatch> find_once(DcmSCU& scu, const StudyQuery& query, const std::string& uid) const;

  PacsEndpoint e_;
};

void DimseClient::echo() {
  T_ASC_Network* net = nullptr;
  OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, timeout(), &net);
  if (cond.bad()) throw PacsError(describe(), "cannot set up the network: " + one_line(cond.text()));
  T_ASC_Parameters* params = nullptr;
  T_ASC_Association* assoc = nullptr;
  std::string problem;
  ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU);
  ASC_setAPTitles(params, e_.aet.c_str(), e_.called_aet.c_str(), nullptr);
  const std::string peer = fmt::format("{}:{}", e_.host, e_.port);
  ASC_setPresentationAddresses(params, OFStandard::getHostName().c_str(), peer.c_str());
  const char* syntaxes[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
  ASC_addPresentationContext(params, 1, UID_VerificationSOPClass, syntaxes, 2);
  dcmConnectionTimeout.set(timeout());
  cond = ASC_requestAssociation(net, params, &assoc, nullptr, nullptr, DUL_BLOCK, timeout());
  if (cond == DUL_ASSOCIATIONREJECTED) {
    T_ASC_RejectParameters reject;
    ASC_getRejectParameters(params, &reject);
    OFString reason;
    ASC_printRejectParameters(reason, &reject);
    problem = "association rejected: " + one_line(reason.c_str());
  } else if (cond.bad()) {
    problem = "cannot associate: " + one_line(cond.text());
  } else if (ASC_countAcceptedPresentationContexts(params) == 0) {
    problem = "the PACS accepted no presentation context for Verification (C-ECHO)";
  } else {
    DIC_US status = 0;
    DcmDataset* detail = nullptr;
    cond = DIMSE_echoUser(assoc, assoc->nextMsgID++, DIMSE_BLOCKING, timeout(), &status, &detail);
    delete detail;
    if (cond.bad()) {
      problem = "C-ECHO failed: " + one_line(cond.text());
    } else if (status != STATUS_Success) {
      problem = fmt::format("C-ECHO answered with status 0x{:04x}", status);
    }
    if (cond.good()) ASC_releaseAssociation(assoc);
  }
  if (assoc != nullptr) {
    ASC_destroyAssociation(&assoc);  // frees its parameters too
  } else if (params != nullptr) {
    ASC_destroyAssociationParameters(&params);
  }
  ASC_dropNetwork(&net);
  if (!problem.empty()) throw PacsError(describe(), problem);
}

std::vector<StudyMatch> DimseClient::find_once(DcmSCU& scu, const StudyQuery& query, const std::string& uid) const {
  DcmDataset keys;
  keys.putAndInsertOFStringArray(DCM_QueryRetrieveLevel, "STUDY");
  keys.putAndInsertOFStringArray(DCM_StudyInstanceUID, uid.c_str());
  keys.putAndInsertOFStringArray(DCM_ModalitiesInStudy, query.modality.c_str());
  keys.putAndInsertOFStringArray(DCM_StudyDate, query.study_date.c_str());
  keys.putAndInsertOFStringArray(DCM_AccessionNumber, query.accession.c_str());
  keys.putAndInsertOFStringArray(DCM_PatientID, "");
  keys.putAndInsertOFStringArray(DCM_NumberOfStudyRelatedInstances, "");
  const T_ASC_PresentationContextID id =
      scu.findPresentationContextID(UID_FINDStudyRootQueryRetrieveInformationModel, "");
  if (id == 0) throw PacsError(describe(), "the PACS accepts no study-root C-FIND");
  OFList<QRResponse*> responses;
  const OFCondition cond = scu.sendFINDRequest(id, &keys, &responses);
  std::vector<StudyMatch> matches;
  Uint16 final_status = 0;
  for (QRResponse* r : responses) {
    if (r->m_dataset != nullptr) {
      StudyMatch m = study_match_of(*r->m_dataset);
      if (!m.study_uid.empty()) matches.push_back(std::move(m));
    }
    final_status = r->m_status;
    delete r;
  }
  if (cond.bad()) fail(scu, "C-FIND", cond);
  if (final_status != STATUS_Success && !DICOM_PENDING_STATUS(final_status)) {
    scu.abortAssociation();
    throw PacsError(describe(), fmt::format("C-FIND answered with status 0x{:04x}", final_status), final_status);
  }
  return matches;
}

std::vector<StudyMatch> DimseClient::find_studies(const StudyQuery& query) {
  DcmSCU scu;
  configure(scu);
  scu.addPresentationContext(UID_FINDStudyRootQueryRetrieveInformationModel, uncompressed_syntaxes());
  connect(scu, "C-FIND association");
  std::map<std::string, StudyMatch> found;
  const std::vector<std::string> uids = query.study_uids.empty() ? std::vector<std::string>{""} : query.study_uids;
  for (const auto& uid : uids) {
    for (auto& m : find_once(scu, query, uid)) found.emplace(m.study_uid, std::move(m));
  }
  scu.releaseAssociation();
  std::vector<StudyMatch> out;
  for (auto& [uid, m] : found) out.push_back(std::move(m));
  return out;
}

std::vector<fs::path> DimseClient::retrieve_study(const std::string& study_uid, const fs::path& folder) {
  fs::create_directories(folder);
  RetrievingScu scu;
  configure(scu);
  scu.setStorageDir(folder.string().c_str());
  scu.addPresentationContext(UID_GETStudyRootQueryRetrieveInformationModel, uncompressed_syntaxes());
  // Storage contexts in the SCP role, for the C-STOREs of the C-GET (at most 128 contexts in all).
  const int storage = std::min(numberOfDcmLongSCUStorageSOPClassUIDs, 120);
  for (int i = 0; i < storage; ++i) {
    scu.addPresentationContext(dcmLongSCUStorageSOPClassUIDs[i], uncompressed_syntaxes(), ASC_SC_ROLE_SCP);
  }
  connect(scu, "C-GET association");
  DcmDataset keys;
  keys.putAndInsertOFStringArray(DCM_QueryRetrieveLevel, "STUDY");
  keys.putAndInsertOFStringArray(DCM_StudyInstanceUID, study_uid.c_str());
  const T_ASC_PresentationContextID id =
      scu.findPresentationContextID(UID_GETStudyRootQueryRetrieveInformationModel, "");
  if (id == 0) throw PacsError(describe(), "the PACS accepts no study-root C-GET");
  OFList<RetrieveResponse*> responses;
  const OFCondition cond = scu.sendCGETRequest(id, &keys, &responses);
  Uint16 status = 0, failed = 0;
  for (RetrieveResponse* r : responses) {
    status = r->m_status;
    failed = std::max(failed, r->m_numberOfFailedSubops);
    delete r;
  }
  if (cond.bad()) fail(scu, "C-GET of study " + study_uid, cond);
  scu.releaseAssociation();
  std::vector<fs::path> files;
  for (const auto& f : scu.received) {
    if (fs::exists(f)) files.push_back(f);
  }
  if (failed > 0 || (status != STATUS_Success && status != STATUS_GET_Warning_SubOperationsCompleteOneOrMoreFailures)) {
    throw PacsError(describe(),
                    fmt::format("C-GET of study {}: status 0x{:04x}, {} object(s) received, {} failed", study_uid,
                                status, files.size(), failed),
                    status);
  }
  if (files.empty())
    throw PacsError(describe(), "C-GET of study " + study_uid + ": the PACS sent no object (no such study?)");
  return files;
}

void DimseClient::store(const std::vector<fs::path>& files) {
  if (files.empty()) return;
  DcmSCU scu;
  configure(scu);
  std::set<std::pair<std::string, std::string>> added;  // SOP class, transfer syntax
  std::vector<std::pair<std::string, std::string>> of_file;
  for (const auto& f : files) {
    DcmFileFormat file;
    if (file.loadFile(f.string().c_str(), EXS_Unknown, EGL_noChange, 256).bad()) {
      throw PacsError(describe(), f.string() + " is not a readable DICOM file");
    }
    OFString sop_class, syntax;
    file.getMetaInfo()->findAndGetOFString(DCM_MediaStorageSOPClassUID, sop_class);
    file.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, syntax);
    of_file.emplace_back(sop_class.c_str(), syntax.c_str());
    if (added.emplace(sop_class.c_str(), syntax.c_str()).second) {
      OFList<OFString> ts;
      ts.push_back(syntax);
      if (syntax != UID_LittleEndianExplicitTransferSyntax) ts.push_back(UID_LittleEndianExplicitTransferSyntax);
      if (syntax != UID_LittleEndianImplicitTransferSyntax) ts.push_back(UID_LittleEndianImplicitTransferSyntax);
      scu.addPresentationContext(sop_class, ts);
    }
  }
  connect(scu, "C-STORE association");
  for (std::size_t i = 0; i < files.size(); ++i) {
    T_ASC_PresentationContextID id = scu.findPresentationContextID(of_file[i].first.c_str(), of_file[i].second.c_str());
    if (id == 0) id = scu.findAnyPresentationContextID(of_file[i].first.c_str(), of_file[i].second.c_str());
    if (id == 0) {
      scu.abortAssociation();
      throw PacsError(describe(), fmt::format("the PACS accepts no presentation context for {} (SOP class {})",
                                              files[i].filename().string(), of_file[i].first));
    }
    Uint16 status = 0;
    const OFCondition cond = scu.sendSTORERequest(id, files[i].string().c_str(), nullptr, status);
    if (cond.bad()) fail(scu, "C-STORE of " + files[i].filename().string(), cond);
    if (status != STATUS_Success && (status & 0xf000) != 0xb000) {
      scu.abortAssociation();
      throw PacsError(describe(),
                      fmt::format("C-STORE of {} refused with status 0x{:04x}", files[i].filename().string(), status),
                      status);
    }
  }
  scu.releaseAssociation();
}

}  // namespace

std::unique_ptr<PacsClient> make_dimse_client(const PacsEndpoint& endpoint) {
  return std::make_unique<DimseClient>(endpoint);
}

}  // namespace vitruvian::pacs
