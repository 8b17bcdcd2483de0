// The PACS keys, their checks, and the credentials from a private file or the environment.
#include "launch/pacs/pacs_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <regex>

#include "core/errors.h"

namespace vitruvian::pacs {
namespace {

namespace fs = std::filesystem;

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

}  // namespace

void PacsEndpoint::visit(ConfigVisitor& v) {
  v.field("protocol", protocol, "dimse or dicomweb");
  v.field("host", host, "DIMSE: the PACS's host name or address");
  v.field("port", port, "DIMSE: the PACS's port");
  v.field("aet", aet, "DIMSE: our calling AE title (the PACS must know it)");
  v.field("called_aet", called_aet, "DIMSE: the PACS's AE title");
  v.field("url", url, "DICOMweb: the service root, e.g. http://pacs:8042/dicom-web");
  v.field("timeout_s", timeout_s, "seconds per network operation");
  v.field("credentials_file", credentials_file,
          "DICOMweb: a file (mode 0600) with user/password or token; else VITRUVIAN_PACS_USER/_PASSWORD or _TOKEN");
}

void PacsEndpoint::validate(const std::string& key) const {
  if (protocol == "dimse") {
    if (host.empty()) throw ConfigError(key + ".host", "a DIMSE PACS needs 'host'");
    if (port < 1 || port > 65535) throw ConfigError(key + ".port", fmt::format("port {}; expected 1..65535", port));
    if (called_aet.empty()) throw ConfigError(key + ".called_aet", "a DIMSE PACS needs 'called_aet' (its AE title)");
    for (const auto& [name, title] : {std::pair{"aet", aet}, std::pair{"called_aet", called_aet}}) {
      if (title.empty() || title.size() > 16 || title.find('\\') != std::string::npos) {
        throw ConfigError(key + "." + name, "AE title '" + title + "'; expected 1..16 characters without a backslash");
      }
    }
  } else if (protocol == "dicomweb") {
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
      throw ConfigError(key + ".url", "DICOMweb url '" + url + "'; expected http://... or https://...");
    }
  } else {
    throw ConfigError(key + ".protocol", "protocol '" + protocol + "'; expected dimse or dicomweb");
  }
  if (!(timeout_s > 0 && timeout_s <= 86400)) {
    throw ConfigError(key + ".timeout_s", fmt::format("timeout_s {}; expected (0, 86400]", timeout_s));
  }
}

std::string PacsEndpoint::describe() const {
  if (protocol == "dimse") return fmt::format("DIMSE {} -> {} at {}:{}", aet, called_aet, host, port);
  return "DICOMweb " + url;
}

void StudyQuery::visit(ConfigVisitor& v) {
  v.field("modality", modality, "ModalitiesInStudy, e.g. CT");
  v.field("study_date", study_date, "StudyDate: YYYYMMDD or a range YYYYMMDD-YYYYMMDD");
  v.field("accession", accession, "AccessionNumber");
  v.field("study_uids", study_uids, "StudyInstanceUIDs (any of them)");
}

void StudyQuery::validate(const std::string& key) const {
  static const std::regex date(R"(\d{8}|\d{8}-|-\d{8}|\d{8}-\d{8})");
  if (!study_date.empty() && !std::regex_match(study_date, date)) {
    throw ConfigError(key + ".study_date", "study_date '" + study_date + "'; expected YYYYMMDD or YYYYMMDD-YYYYMMDD");
  }
  static const std::regex uid(R"([0-9]+(\.[0-9]+)*)");
  for (const auto& u : study_uids) {
    if (u.size() > 64 || !std::regex_match(u, uid)) {
      throw ConfigError(key + ".study_uids", "'" + u + "' is not a DICOM UID (digits and dots, at most 64)");
    }
  }
  for (const auto* text : {&modality, &accession}) {
    if (text->find_first_of("\\*?") != std::string::npos) {
      throw ConfigError(key, "'" + *text + "': wildcards and backslashes are not taken in modality or accession");
    }
  }
}

void PacsSourceConfig::visit(ConfigVisitor& v) {
  PacsEndpoint::visit(v);
  v.section("query", [&](ConfigVisitor& q) { query.visit(q); });
}

Credentials load_credentials(const PacsEndpoint& endpoint) {
  Credentials c;
  if (endpoint.credentials_file.empty()) {
    c.user = env("VITRUVIAN_PACS_USER");
    c.password = env("VITRUVIAN_PACS_PASSWORD");
    c.token = env("VITRUVIAN_PACS_TOKEN");
    if (!c.user.empty() && !c.token.empty()) c.user.clear();  // a token wins
    return c;
  }
  const fs::path& file = endpoint.credentials_file;
  std::error_code error;
  const fs::perms mode = fs::status(file, error).permissions();
  if (error || !fs::is_regular_file(file)) throw ConfigError(file.string(), "credentials_file cannot be read");
  using fs::perms;
  if ((mode & (perms::group_all | perms::others_all)) != perms::none) {
    throw ConfigError(file.string(),
                      fmt::format("credentials_file is open to group or others (mode {:04o}); run chmod 600 on it",
                                  static_cast<unsigned>(mode & perms::mask)));
  }
  try {
    const YAML::Node node = YAML::LoadFile(file.string());
    if (node["user"]) c.user = node["user"].as<std::string>();
    if (node["password"]) c.password = node["password"].as<std::string>();
    if (node["token"]) c.token = node["token"].as<std::string>();
  } catch (const YAML::Exception& e) {
    throw ConfigError(file.string(),
                      std::string("credentials_file is not YAML (user:, password: or token:): ") + e.what());
  }
  if (c.user.empty() && c.token.empty())
    throw ConfigError(file.string(), "credentials_file holds neither 'user' nor 'token'");
  return c;
}

}  // namespace vitruvian::pacs
