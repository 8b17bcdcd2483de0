// The DICOMweb client over libcurl: QIDO-RS for the study query (and the set-up check),
// WADO-RS for a study's instances (multipart/related split as it streams in), STOW-RS for results.
#include <curl/curl.h>
#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "launch/pacs/multipart.h"
#include "launch/pacs/pacs_client.h"
#include "launch/pacs/query_results.h"

namespace vitruvian::pacs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// What an HTTP exchange gave: status, Content-Type, and the body unless a sink took it.
struct Reply {
  long status = 0;
  std::string content_type;
  std::string body;
};

class DicomWebClient final : public PacsClient {
 public:
  DicomWebClient(PacsEndpoint endpoint, Credentials credentials)
      : e_(std::move(endpoint)), credentials_(std::move(credentials)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    while (!e_.url.empty() && e_.url.back() == '/') e_.url.pop_back();
  }

  std::string describe() const override { return e_.describe(); }

  void echo() override {
    const Reply r = request("GET", "/studies?limit=1", "application/dicom+json", {}, nullptr);
    check_status(r, "QIDO-RS check");
  }

  std::vector<StudyMatch> find_studies(const StudyQuery& query) override;
  std::vector<fs::path> retrieve_study(const std::string& study_uid, const fs::path& folder) override;
  void store(const std::vector<fs::path>& files) override;

 private:
  /// One HTTP request to url + `path`; `sink`, when given, receives the body instead of Reply.
  Reply request(const std::string& method, const std::string& path, const std::string& accept, const std::string& body,
                const std::function<void(const Reply&, const char*, std::size_t)>& sink,
                const std::string& content_type = "") const;
  void check_status(const Reply& r, const std::string& what) const {
    if (r.status >= 200 && r.status < 300) return;
    std::string reason = r.status == 401   ? "credentials missing or refused"
                         : r.status == 403 ? "access forbidden"
                         : r.status == 404 ? "not found"
                                           : "refused";
    std::string text = r.body.substr(0, 200);
    for (char& c : text) c = (c == '\n' || c == '\r') ? ' ' : c;
    throw PacsError(describe(),
                    fmt::format("{}: HTTP {} ({}){}", what, r.status, reason, text.empty() ? "" : ": " + text),
                    static_cast<int>(r.status));
  }
  std::string escape(const std::string& text) const {
    char* escaped = curl_easy_escape(nullptr, text.c_str(), static_cast<int>(text.size()));
    std::string out(escaped);
    curl_free(escaped);
    return out;
  }

  PacsEndpoint e_;
  Credentials credentials_;
};

struct Transfer {
  CURL* curl = nullptr;
  Reply reply;
  const std::function<void(const Reply&, const char*, std::size_t)>* sink = nullptr;
  std::string error;  ///< a sink's exception, reported after curl stops
};

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string line(data, size * n);
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name == "content-type") {
      std::string value = line.substr(colon + 1);
      const auto first = value.find_first_not_of(" \t");
      const auto last = value.find_last_not_of(" \t\r\n");
      t->reply.content_type = first == std::string::npos ? "" : value.substr(first, last + 1 - first);
    }
  }
  return size * n;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (t->reply.status == 0) curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->reply.status);  // headers are in
  // A successful answer goes to the sink; an error's text is kept for the message.
  if (t->sink != nullptr && t->reply.status >= 200 && t->reply.status < 300) {
    try {
      (*t->sink)(t->reply, data, size * n);
    } catch (const std::exception& e) {
      t->error = e.what();
      return 0;  // stops the transfer
    }
  } else if (t->reply.body.size() < (1u << 20)) {
    t->reply.body.append(data, size * n);
  }
  return size * n;
}

Reply DicomWebClient::request(const std::string& method, const std::string& path, const std::string& accept,
                              const std::string& body,
                              const std::function<void(const Reply&, const char*, std::size_t)>& sink,
                              const std::string& content_type) const {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) throw PacsError(describe(), "cannot start libcurl");
  const std::string url = e_.url + path;
  Transfer transfer;
  transfer.curl = curl;
  transfer.sink = sink ? &sink : nullptr;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, ("Accept: " + accept).c_str());
  if (!content_type.empty()) headers = curl_slist_append(headers, ("Content-Type: " + content_type).c_str());
  if (!credentials_.token.empty())
    headers = curl_slist_append(headers, ("Authorization: Bearer " + credentials_.token).c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(e_.timeout_s * 1000));
  // A transfer may be long (a large study); it fails when nothing arrives for timeout_s.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, std::max(1L, static_cast<long>(e_.timeout_s)));
  if (!credentials_.user.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, credentials_.user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, credentials_.password.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  const CURLcode code = curl_easy_perform(curl);
  if (transfer.reply.status == 0) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &transfer.reply.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (!transfer.error.empty()) throw PacsError(describe(), fmt::format("{} {}: {}", method, path, transfer.error));
  if (code != CURLE_OK) throw PacsError(describe(), fmt::format("{} {}: {}", method, path, curl_easy_strerror(code)));
  return transfer.reply;
}

std::vector<StudyMatch> DicomWebClient::find_studies(const StudyQuery& query) {
  std::string keys = "includefield=00080061&includefield=00201208&includefield=00100020";
  if (!query.modality.empty()) keys += "&ModalitiesInStudy=" + escape(query.modality);
  if (!query.study_date.empty()) keys += "&StudyDate=" + escape(query.study_date);
  if (!query.accession.empty()) keys += "&AccessionNumber=" + escape(query.accession);
  std::map<std::string, StudyMatch> found;
  const std::vector<std::string> uids = query.study_uids.empty() ? std::vector<std::string>{""} : query.study_uids;
  for (const auto& uid : uids) {
    const std::string path = "/studies?" + keys + (uid.empty() ? "" : "&StudyInstanceUID=" + escape(uid));
    const Reply r = request("GET", path, "application/dicom+json", {}, nullptr);
    check_status(r, "QIDO-RS");
    if (r.status == 204 || r.body.empty()) continue;
    for (auto& m : parse_qido_studies(r.body, describe())) found.emplace(m.study_uid, std::move(m));
  }
  std::vector<StudyMatch> out;
  for (auto& [uid, m] : found) out.push_back(std::move(m));
  return out;
}

std::vector<fs::path> DicomWebClient::retrieve_study(const std::string& study_uid, const fs::path& folder) {
  fs::create_directories(folder);
  std::vector<fs::path> files;
  std::ofstream out;
  std::unique_ptr<MultipartReader> reader;
  std::string skipped;
  const auto sink = [&](const Reply& reply, const char* data, std::size_t size) {
    if (!reader) {
      const std::string boundary = content_type_parameter(reply.content_type, "boundary");
      if (reply.content_type.rfind("multipart/related", 0) != 0 || boundary.empty()) {
        throw std::runtime_error("WADO-RS answered with Content-Type '" + reply.content_type +
                                 "'; expected multipart/related with a boundary");
      }
      reader = std::make_unique<MultipartReader>(
          boundary,
          [&](const std::string& type) {
            if (out.is_open()) out.close();
            if (!type.empty() && type.rfind("application/dicom", 0) != 0) {
              skipped = type;  // a part that is not a DICOM instance (bulk data, metadata)
              return;
            }
            files.push_back(folder / fmt::format("{:06d}.dcm", files.size()));
            out.open(files.back(), std::ios::binary);
            if (!out) throw std::runtime_error("cannot write " + files.back().string());
          },
          [&](const char* bytes, std::size_t n) {
            if (out.is_open() && !out.write(bytes, static_cast<std::streamsize>(n))) {
              throw std::runtime_error("cannot write " + files.back().string());
            }
          });
    }
    reader->feed(data, size);
  };
  const Reply r =
      request("GET", "/studies/" + escape(study_uid), "multipart/related; type=\"application/dicom\"", {}, sink);
  if (out.is_open()) out.close();
  check_status(r, "WADO-RS of study " + study_uid);
  try {
    if (!reader) throw std::runtime_error("the answer is empty");
    reader->finish();
  } catch (const std::exception& e) {
    throw PacsError(describe(), fmt::format("WADO-RS of study {}: {}", study_uid, e.what()));
  }
  if (files.empty()) throw PacsError(describe(), "WADO-RS of study " + study_uid + ": no DICOM instance in the answer");
  return files;
}

void DicomWebClient::store(const std::vector<fs::path>& files) {
  if (files.empty()) return;
  const std::string boundary =
      fmt::format("vitruvian-{:x}", std::chrono::steady_clock::now().time_since_epoch().count());
  std::string body;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) throw PacsError(describe(), f.string() + " cannot be read");
    std::stringstream bytes;
    bytes << in.rdbuf();
    body += "--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n" + bytes.str() + "\r\n";
  }
  body += "--" + boundary + "--\r\n";
  const Reply r = request("POST", "/studies", "application/dicom+json", body, nullptr,
                          "multipart/related; type=\"application/dicom\"; boundary=" + boundary);
  // 200: all stored; 202: some refused; 409: all refused. The answer lists the refused ones.
  json answer;
  try {
    answer = r.body.empty() ? json::object() : json::parse(r.body);
  } catch (const json::exception&) {
    check_status(r, "STOW-RS");
    throw PacsError(describe(), "STOW-RS answer is not DICOM JSON", static_cast<int>(r.status));
  }
  const auto failed = answer.find("00081198");
  if (failed != answer.end() && failed->contains("Value") && !(*failed)["Value"].empty()) {
    const json& first = (*failed)["Value"][0];
    const std::string reason = dicom_json_value(first, "00081197");
    int code = static_cast<int>(r.status);  // when the PACS gives no FailureReason that is a number
    if (!reason.empty()) std::from_chars(reason.data(), reason.data() + reason.size(), code);
    throw PacsError(describe(),
                    fmt::format("STOW-RS refused {} of {} instance(s) (HTTP {}); first {}: failure reason 0x{:04x}",
                                (*failed)["Value"].size(), files.size(), r.status, dicom_json_value(first, "00081155"), code),
                    code);
  }
  check_status(r, "STOW-RS");
  // Some servers drop an instance they refuse without listing it as failed: count the stored ones.
  const auto stored = answer.find("00081199");
  const std::size_t n = stored != answer.end() && stored->contains("Value") ? (*stored)["Value"].size() : 0;
  if (n < files.size()) {
    throw PacsError(describe(),
                    fmt::format("STOW-RS stored {} of {} instance(s) (HTTP {}); the PACS listed the others neither as "
                                "stored nor as failed",
                                n, files.size(), r.status),
                    static_cast<int>(r.status));
  }
}

}  // namespace

std::unique_ptr<PacsClient> make_dicomweb_client(const PacsEndpoint& endpoint, Credentials credentials) {
  return std::make_unique<DicomWebClient>(endpoint, std::move(credentials));
}

}  // namespace vitruvian::pacs
