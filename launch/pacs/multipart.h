// multipart/related bodies (RFC 2046, as DICOMweb's WADO-RS and STOW-RS use them): a streaming
// reader that splits a body into its parts as the bytes arrive, and a writer of parts.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace vitruvian::pacs {

/// The value of `parameter` in a Content-Type header ("boundary" of
/// `multipart/related; type="application/dicom"; boundary=abc`), unquoted; "" when absent.
std::string content_type_parameter(const std::string& content_type, const std::string& parameter);

/// Splits a multipart body into parts without holding it whole: feed() the bytes as they come,
/// then finish(). Each part: on_part(its Content-Type) once, on_data(bytes) any number of times.
class MultipartReader {
 public:
  MultipartReader(std::string boundary, std::function<void(const std::string& content_type)> on_part,
                  std::function<void(const char* data, std::size_t size)> on_data);
  void feed(const char* data, std::size_t size);
  /// std::runtime_error when the body ended before its closing delimiter.
  void finish() const;
  std::size_t parts() const { return parts_; }

 private:
  void step();
  enum class State { kPreamble, kAfterDelimiter, kHeaders, kBody, kDone };
  std::string delimiter_;  ///< "\r\n--" + boundary
  std::function<void(const std::string&)> on_part_;
  std::function<void(const char*, std::size_t)> on_data_;
  std::string buffer_;
  State state_ = State::kPreamble;
  std::size_t parts_ = 0;
};

}  // namespace vitruvian::pacs
