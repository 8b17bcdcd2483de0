// multipart/related (WADO-RS answers): the input's first line is the Content-Type header, the
// rest the body. The body is split once whole and once in pieces of sizes drawn from the input;
// both must give the same parts with the same bytes (the reader sees the body as it streams in).
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "launch/pacs/multipart.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vitruvian;

namespace {

struct Split {
  std::vector<std::string> types, parts;
  bool finished = false;
};

/// Splits `body` fed in pieces: `piece` bytes at a time, 0 for all at once.
Split split(const std::string& boundary, const std::string& body, std::size_t piece) {
  Split out;
  pacs::MultipartReader reader(
      boundary,
      [&](const std::string& type) {
        out.types.push_back(type);
        out.parts.emplace_back();
      },
      [&](const char* data, std::size_t size) {
        if (out.parts.empty()) fuzz::finding("part data before any part");
        out.parts.back().append(data, size);
      });
  for (std::size_t at = 0; at < body.size();) {
    const std::size_t n = piece == 0 ? body.size() : std::min(piece, body.size() - at);
    reader.feed(body.data() + at, n);
    at += n;
  }
  try {
    reader.finish();
    out.finished = true;
  } catch (const std::runtime_error& e) {
    fuzz::check_one_line(e.what());
  }
  if (reader.parts() != out.types.size()) fuzz::finding("parts() differs from the parts reported");
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const auto eol = input.find('\n');
  const std::string content_type = input.substr(0, eol);
  const std::string body = eol == std::string::npos ? "" : input.substr(eol + 1);
  const std::string boundary = pacs::content_type_parameter(content_type, "boundary");
  if (boundary.empty()) return 0;  // the client refuses such an answer before reading it
  const Split whole = split(boundary, body, 0);
  const std::size_t piece = 1 + (content_type.size() + body.size()) % 7;
  const Split pieces = split(boundary, body, piece);
  if (whole.types != pieces.types || whole.parts != pieces.parts || whole.finished != pieces.finished) {
    fuzz::finding("the parts depend on how the body arrives (pieces of " + std::to_string(piece) + " bytes)");
  }
  return 0;
}
