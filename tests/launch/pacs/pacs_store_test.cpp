// PacsStore (the campaign's results back into the PACS) against the Orthanc pacs_clients.sh
// started: a committed study folder's DICOM files reach the study they name, a second push adds
// nothing (same SOP Instance UIDs), and a PACS that refuses them gives a PacsError with its
// status while the local files stay.
#include "launch/campaign/pacs_store.h"

#include <dcmtk/config/osconfig.h>  // first: DCMTK's configuration
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "launch/campaign/ledger.h"
#include "tests/launch/pacs/orthanc_endpoint.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;
const std::string kStudy = "1.2.826.0.1.3680043.2.1125.1.3";

std::int64_t instances_in_study(const pacs::PacsEndpoint& e) {
  pacs::StudyQuery q;
  q.study_uids = {kStudy};
  const auto found = pacs::make_pacs_client(e)->find_studies(q);
  return found.empty() ? 0 : found.front().instances;
}

/// Commits study `id` holding "results": the followup slices as a new series of kStudy with
/// fixed SOP Instance UIDs (as a result writer makes them), described as `description`.
fs::path commit_results(const Ledger& ledger, const std::string& id, const std::string& description) {
  ledger.commit(id, [&](const fs::path& dir) {
    int i = 0;
    for (const auto& f : fs::directory_iterator(fs::path(pacs::orthanc_test::env("PACS_TEST_DATA")) / "followup")) {
      DcmFileFormat file;
      ASSERT_TRUE(file.loadFile(f.path().string().c_str()).good());
      DcmDataset& d = *file.getDataset();
      const std::string sop = "1.2.826.0.1.3680043.2.1125.9." + id.substr(0, 1) + "." + std::to_string(++i);
      d.putAndInsertString(DCM_StudyInstanceUID, kStudy.c_str());
      d.putAndInsertString(DCM_SeriesInstanceUID, ("1.2.826.0.1.3680043.2.1125.9." + id.substr(0, 1)).c_str());
      d.putAndInsertString(DCM_SOPInstanceUID, sop.c_str());
      d.putAndInsertString(DCM_SeriesDescription, description.c_str());
      file.getMetaInfo()->putAndInsertString(DCM_MediaStorageSOPInstanceUID, sop.c_str());
      ASSERT_TRUE(
          file.saveFile((dir / ("result_" + std::to_string(i) + ".dcm")).string().c_str(), EXS_LittleEndianExplicit)
              .good());
    }
  });
  return ledger.study_dir(id);
}

class PacsStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (pacs::orthanc_test::env("ORTHANC_DICOM_PORT").empty())
      GTEST_SKIP() << "run through pacs_clients.sh (it starts Orthanc)";
  }
};

TEST_P(PacsStoreTest, PushesOnceAndReportsRefusals) {
  const Ledger ledger(fs::path(pacs::orthanc_test::env("PACS_TEST_WORK")) / ("store_" + GetParam()));
  ledger.prepare(false, [](const std::string&) { return true; });
  const std::string tag = GetParam() == "dimse" ? "d" : "w";
  const fs::path dir = commit_results(ledger, tag + "-study", "results");
  ASSERT_EQ(PacsStore::files_of(dir).size(), 3u);
  const std::int64_t before = instances_in_study(pacs::orthanc_test::orthanc_endpoint(GetParam()));
  const PacsStore store(pacs::orthanc_test::orthanc_endpoint(GetParam()));
  EXPECT_EQ(store.push(dir), 3u);
  EXPECT_EQ(instances_in_study(pacs::orthanc_test::orthanc_endpoint(GetParam())), before + 3);
  EXPECT_EQ(store.push(dir), 3u);  // again: nothing new
  EXPECT_EQ(instances_in_study(pacs::orthanc_test::orthanc_endpoint(GetParam())), before + 3);

  // Refused: by calling AE title (DIMSE) or by content (both); the local files stay.
  const fs::path refused = commit_results(ledger, tag + "x-refused", "VITRUVIAN-REFUSE");
  pacs::PacsEndpoint e = pacs::orthanc_test::orthanc_endpoint(GetParam());
  try {
    PacsStore(e).push(refused);
    ADD_FAILURE() << "no PacsError";
  } catch (const pacs::PacsError& error) {
    EXPECT_NE(error.status(), 0) << error.what();
  }
  if (GetParam() == "dimse") {
    e.aet = "VITRUVIAN-RO";
    try {
      PacsStore(e).push(dir);
      ADD_FAILURE() << "no PacsError";
    } catch (const pacs::PacsError& error) {
      EXPECT_EQ(error.status() & 0xff00, 0xa700) << error.what();
      EXPECT_NE(std::string(error.what()).find("VITRUVIAN-RO -> ORTHANC"), std::string::npos) << error.what();
    }
  }
  EXPECT_EQ(PacsStore::files_of(refused).size(), 3u);
  EXPECT_EQ(instances_in_study(pacs::orthanc_test::orthanc_endpoint(GetParam())), before + 3);
}

INSTANTIATE_TEST_SUITE_P(Protocols, PacsStoreTest, ::testing::Values("dimse", "dicomweb"));

}  // namespace
}  // namespace vitruvian::campaign
