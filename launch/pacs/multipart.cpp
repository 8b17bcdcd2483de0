// The streaming multipart/related reader and Content-Type parameters.
#include "launch/pacs/multipart.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace vitruvian::pacs {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") + 1 - first);
}

/// The Content-Type header among a part's header lines ("" when it has none).
std::string part_content_type(const std::string& headers) {
  std::size_t start = 0;
  while (start < headers.size()) {
    std::size_t end = headers.find("\r\n", start);
    if (end == std::string::npos) end = headers.size();
    const std::string line = headers.substr(start, end - start);
    const auto colon = line.find(':');
    if (colon != std::string::npos && lower(trim(line.substr(0, colon))) == "content-type")
      return trim(line.substr(colon + 1));
    start = end + 2;
  }
  return "";
}

}  // namespace

std::string content_type_parameter(const std::string& content_type, const std::string& parameter) {
  std::size_t pos = content_type.find(';');
  while (pos != std::string::npos) {
    const std::size_t next = content_type.find(';', pos + 1);
    const std::string item =
        content_type.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    const auto eq = item.find('=');
    if (eq != std::string::npos && lower(trim(item.substr(0, eq))) == lower(parameter)) {
      std::string value = trim(item.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
      return value;
    }
    pos = next;
  }
  return "";
}

MultipartReader::MultipartReader(std::string boundary, std::function<void(const std::string&)> on_part,
                                 std::function<void(const char*, std::size_t)> on_data)
    : delimiter_("\r\n--" + std::move(boundary)), on_part_(std::move(on_part)), on_data_(std::move(on_data)) {}

void MultipartReader::feed(const char* data, std::size_t size) {
  buffer_.append(data, size);
  step();
}

void MultipartReader::step() {
  for (;;) {
    switch (state_) {
      case State::kPreamble: {
        // The first delimiter may open the body without a CRLF before it.
        const std::string first = delimiter_.substr(2);
        const auto at = buffer_.find(first);
        if (at == std::string::npos) {
          if (buffer_.size() > first.size()) buffer_.erase(0, buffer_.size() - first.size());
          return;
        }
        buffer_.erase(0, at + first.size());
        state_ = State::kAfterDelimiter;
        break;
      }
      case State::kAfterDelimiter: {
        if (buffer_.size() < 2) return;
        if (buffer_.compare(0, 2, "--") == 0) {
          state_ = State::kDone;
          buffer_.clear();
          return;
        }
        const auto eol = buffer_.find("\r\n");  // transport padding may precede it
        if (eol == std::string::npos) return;
        buffer_.erase(0, eol + 2);
        state_ = State::kHeaders;
        break;
      }
      case State::kHeaders: {
        if (buffer_.compare(0, 2, "\r\n") == 0) {  // a part without headers
          buffer_.erase(0, 2);
          on_part_("");
        } else {
          const auto end = buffer_.find("\r\n\r\n");
          if (end == std::string::npos) return;
          on_part_(part_content_type(buffer_.substr(0, end)));
          buffer_.erase(0, end + 4);
        }
        ++parts_;
        state_ = State::kBody;
        break;
      }
      case State::kBody: {
        const auto at = buffer_.find(delimiter_);
        if (at == std::string::npos) {
          // Everything but a tail that may be the start of the delimiter is part data.
          if (buffer_.size() > delimiter_.size()) {
            const std::size_t safe = buffer_.size() - delimiter_.size();
            on_data_(buffer_.data(), safe);
            buffer_.erase(0, safe);
          }
          return;
        }
        if (at > 0) on_data_(buffer_.data(), at);
        buffer_.erase(0, at + delimiter_.size());
        state_ = State::kAfterDelimiter;
        break;
      }
      case State::kDone:
        buffer_.clear();
        return;
    }
  }
}

void MultipartReader::finish() const {
  if (state_ != State::kDone) {
    throw std::runtime_error(parts_ == 0 ? "the multipart body holds no part (no boundary found)"
                                         : "the multipart body ends before its closing boundary");
  }
}

}  // namespace vitruvian::pacs
