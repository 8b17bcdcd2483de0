// The PACS clients against a real Orthanc (started by pacs_clients.sh, tests/tools/orthanc.sh),
// both protocols: echo, store (twice: no duplicates), study query by each key, retrieval, and
// the faults (association rejected, nothing listening, credentials missing, a refused store, an
// unknown study); and the multipart reader on bodies fed in every chunk size.
#include "launch/pacs/pacs_client.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>

#include "launch/pacs/multipart.h"
#include "launch/pacs/query_results.h"
#include "tests/launch/pacs/orthanc_endpoint.h"

namespace vitruvian::pacs {
namespace {

namespace fs = std::filesystem;
const std::string kStudy1 = "1.2.826.0.1.3680043.2.1125.1.1";
const std::string kStudy2 = "1.2.826.0.1.3680043.2.1125.1.2";

std::vector<fs::path> files_under(const fs::path& folder) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(folder)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::set<std::string> uids(const std::vector<StudyMatch>& matches) {
  std::set<std::string> out;
  for (const auto& m : matches) out.insert(m.study_uid);
  return out;
}

/// The message of the PacsError `f` throws ("" and a test failure when it throws none).
template <class F>
std::string pacs_error(F&& f, int* status = nullptr) {
  try {
    f();
  } catch (const PacsError& e) {
    if (status != nullptr) *status = e.status();
    return e.what();
  }
  ADD_FAILURE() << "no PacsError";
  return "";
}

class PacsClientTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (orthanc_test::env("ORTHANC_DICOM_PORT").empty())
      GTEST_SKIP() << "run through pacs_clients.sh (it starts Orthanc)";
    client_ = make_pacs_client(orthanc_test::orthanc_endpoint(GetParam()));
  }
  std::unique_ptr<PacsClient> client_;
};

TEST_P(PacsClientTest, EchoStoreFindRetrieve) {
  client_->echo();
  const auto data = files_under(orthanc_test::env("PACS_TEST_DATA"));
  ASSERT_EQ(data.size(), 20u);  // 18 slices, a structured report, a presentation state
  client_->store(data);
  client_->store(data);  // again: the same instances, no duplicates

  const auto all = client_->find_studies({});
  ASSERT_EQ(uids(all), (std::set<std::string>{kStudy1, kStudy2}));
  EXPECT_EQ(all[0].instances, 17);  // 6 ct + 4 t2 + 5 scout + SR + PR
  EXPECT_EQ(all[1].instances, 3);
  EXPECT_EQ(all[0].accession, "ACC-1");
  EXPECT_EQ(all[0].patient_id, "PAT-0042");

  StudyQuery q;
  q.modality = "MR";
  EXPECT_EQ(uids(client_->find_studies(q)), std::set<std::string>{kStudy1});
  q = {};
  q.modality = "CT";
  EXPECT_EQ(uids(client_->find_studies(q)), (std::set<std::string>{kStudy1, kStudy2}));
  q = {};
  q.study_date = "20240101-20241231";
  EXPECT_EQ(uids(client_->find_studies(q)), std::set<std::string>{kStudy1});
  q.study_date = "-20231231";
  EXPECT_EQ(uids(client_->find_studies(q)), std::set<std::string>{kStudy2});
  q = {};
  q.accession = "ACC-2";
  EXPECT_EQ(uids(client_->find_studies(q)), std::set<std::string>{kStudy2});
  q = {};
  q.study_uids = {kStudy2, "1.2.3.4.5.6.7"};
  EXPECT_EQ(uids(client_->find_studies(q)), std::set<std::string>{kStudy2});
  q.study_uids = {kStudy1, kStudy2};
  q.accession = "ACC-1";
  EXPECT_EQ(uids(client_->find_studies(q)), std::set<std::string>{kStudy1});

  const fs::path folder = fs::path(orthanc_test::env("PACS_TEST_WORK")) / ("retrieved_" + GetParam());
  fs::remove_all(folder);
  const auto files = client_->retrieve_study(kStudy1, folder);
  EXPECT_EQ(files.size(), 17u);
  int images = 0;
  std::multiset<std::string> kinds;
  for (const auto& f : files) {
    ASSERT_TRUE(fs::exists(f));
    std::string kind;
    if (is_image_object(f, kind)) ++images;
    kinds.insert(kind);
  }
  EXPECT_EQ(images, 15);
  EXPECT_EQ(kinds.count("SR"), 1u);
  EXPECT_EQ(kinds.count("PR"), 1u);
  EXPECT_EQ(kinds.count("MR"), 4u);
}

TEST_P(PacsClientTest, UnknownStudyAndRefusedStore) {
  const std::string missing = pacs_error(
      [&] { client_->retrieve_study("1.2.3.4.5.6.7.8", fs::path(orthanc_test::env("PACS_TEST_WORK")) / "missing"); });
  EXPECT_NE(missing.find("1.2.3.4.5.6.7.8"), std::string::npos) << missing;
  int status = 0;
  const std::string refused =
      pacs_error([&] { client_->store(files_under(orthanc_test::env("PACS_TEST_REFUSE"))); }, &status);
  EXPECT_NE(status, 0) << refused;
  EXPECT_NE(
      refused.find(GetParam() == "dimse" ? "C-STORE of refuse.dcm refused with status 0xa7" : "STOW-RS stored 0 of 1"),
      std::string::npos)
      << refused;
  StudyQuery q;
  q.study_uids = {kStudy2};
  for (const auto& m : client_->find_studies(q)) EXPECT_EQ(m.instances, 3);  // nothing of it stored
}

INSTANTIATE_TEST_SUITE_P(Protocols, PacsClientTest, ::testing::Values("dimse", "dicomweb"));

TEST(PacsFaults, DimseRejectedOrUnreachable) {
  if (orthanc_test::env("ORTHANC_DICOM_PORT").empty()) GTEST_SKIP() << "run through pacs_clients.sh";
  PacsEndpoint e = orthanc_test::orthanc_endpoint("dimse");
  e.called_aet = "NOT-ORTHANC";
  std::string m = pacs_error([&] { make_pacs_client(e)->echo(); });
  EXPECT_NE(m.find("VITRUVIAN -> NOT-ORTHANC at 127.0.0.1:" + orthanc_test::env("ORTHANC_DICOM_PORT")),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("association rejected: Result: Rejected Permanent, Source: Service User Reason: Called AE Title Not "
                   "Recognized"),
            std::string::npos)
      << m;
  e = orthanc_test::orthanc_endpoint("dimse");
  e.aet = "STRANGER";
  m = pacs_error([&] { make_pacs_client(e)->echo(); });
  EXPECT_NE(m.find("Calling AE Title Not Recognized"), std::string::npos) << m;
  e = orthanc_test::orthanc_endpoint("dimse");
  e.port = std::stoll(orthanc_test::env("PACS_TEST_CLOSED_PORT"));
  m = pacs_error([&] { make_pacs_client(e)->echo(); });
  EXPECT_NE(m.find("at 127.0.0.1:" + orthanc_test::env("PACS_TEST_CLOSED_PORT") + ": cannot associate"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("refused"), std::string::npos) << m;
}

TEST(PacsFaults, DicomWebCredentialsOrUnreachable) {
  if (orthanc_test::env("ORTHANC_DICOM_PORT").empty()) GTEST_SKIP() << "run through pacs_clients.sh";
  PacsEndpoint e = orthanc_test::orthanc_endpoint("dicomweb");
  std::string m = pacs_error([&] { make_dicomweb_client(e, {})->echo(); });
  EXPECT_NE(m.find("DICOMweb " + orthanc_test::env("ORTHANC_URL") +
                   ": QIDO-RS check: HTTP 401 (credentials missing or refused)"),
            std::string::npos)
      << m;
  m = pacs_error([&] { make_dicomweb_client(e, {"alice", "wrong", ""})->echo(); });
  EXPECT_NE(m.find("HTTP 401"), std::string::npos) << m;
  e.url = "http://127.0.0.1:" + orthanc_test::env("PACS_TEST_CLOSED_PORT") + "/dicom-web";
  m = pacs_error([&] { make_pacs_client(e)->echo(); });
  EXPECT_NE(m.find("DICOMweb " + e.url), std::string::npos) << m;
  EXPECT_NE(m.find("Couldn't connect"), std::string::npos) << m;
}

TEST(Multipart, SplitsPartsFedInAnyChunks) {
  const std::string body =
      "preamble\r\n--b0undary\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--b0undar\r\nstill first"
      "\r\n--b0undary  \r\ncontent-type: application/dicom\r\nX: y\r\n\r\n\r\n--\r\n--b0undary--\r\nepilogue";
  for (std::size_t chunk = 1; chunk <= body.size(); ++chunk) {
    std::vector<std::string> types, parts;
    MultipartReader reader(
        content_type_parameter("multipart/related; type=\"application/dicom\"; boundary=\"b0undary\"", "boundary"),
        [&](const std::string& t) {
          types.push_back(t);
          parts.emplace_back();
        },
        [&](const char* d, std::size_t n) { parts.back().append(d, n); });
    for (std::size_t i = 0; i < body.size(); i += chunk) reader.feed(body.data() + i, std::min(chunk, body.size() - i));
    reader.finish();
    ASSERT_EQ(parts.size(), 2u) << chunk;
    EXPECT_EQ(parts[0], "first\r\n--b0undar\r\nstill first") << chunk;
    EXPECT_EQ(parts[1], "\r\n--") << chunk;
    EXPECT_EQ(types[0], "application/dicom");
    EXPECT_EQ(types[1], "application/dicom");
  }
  MultipartReader cut(
      "b", [](const std::string&) {}, [](const char*, std::size_t) {});
  cut.feed("--b\r\n\r\nabc", 11);
  EXPECT_THROW(cut.finish(), std::runtime_error);
  EXPECT_EQ(content_type_parameter("multipart/related; boundary=abc ; type=x", "BOUNDARY"), "abc");
}

TEST(QueryResults, QidoAnswersAndTheirFaults) {
  const auto studies = parse_qido_studies(
      R"([{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "00080061": {"vr": "CS", "Value": ["CT", "SEG"]},
          "00100020": {"vr": "LO", "Value": ["P1"]}, "00201208": {"vr": "IS", "Value": [42]}},
         {"00100020": {"vr": "LO", "Value": ["no study uid"]}},
         {"0020000D": {"vr": "UI", "Value": ["1.2.4"]}, "00201208": {"vr": "IS", "Value": ["7"]}}])",
      "DICOMweb test");
  ASSERT_EQ(studies.size(), 2u);
  EXPECT_EQ(studies[0].study_uid, "1.2.3");
  EXPECT_EQ(studies[0].modalities, "CT\\SEG");
  EXPECT_EQ(studies[0].patient_id, "P1");
  EXPECT_EQ(studies[0].instances, 42);
  EXPECT_EQ(studies[1].instances, 7);
  // What fuzzing found: each is a PacsError naming the PACS, not another exception or undefined behaviour.
  for (const char* body : {R"({"0020000D": {}})", R"([{"0020000D": {"Value": ["1.2"]}, "00080061": {"Value": [5]}}])",
                           R"([{"0020000D": {"Value": ["1.2"]}, "00201208": {"Value": ["many"]}}])",
                           R"([{"0020000D": {"Value": ["1.2"]}, "00201208": {"Value": [8e26]}}])", "not json"}) {
    try {
      parse_qido_studies(body, "DICOMweb test");
      ADD_FAILURE() << body;
    } catch (const PacsError& e) {
      EXPECT_NE(std::string(e.what()).find("DICOMweb test: QIDO-RS answer"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace vitruvian::pacs
