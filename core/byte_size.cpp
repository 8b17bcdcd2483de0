// Parsing of byte sizes.
#include "core/byte_size.h"

#include <exception>

#include "core/errors.h"

namespace vitruvian {

double parse_byte_size(const std::string& text, const std::string& option) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  double scale = 1;
  if (unit == "G" || unit == "GB" || unit == "g") {
    scale = 1e9;
  } else if (unit == "M" || unit == "MB" || unit == "m") {
    scale = 1e6;
  } else if (!unit.empty() || used == 0) {
    scale = -1;
  }
  if (scale < 0 || !(value > 0)) throw InputError(option + " " + text, "expected a size such as 8G, 512M or a number of bytes");
  return value * scale;
}

}  // namespace vitruvian
