// Sizes in bytes as people write them on command lines and in configs ("8G", "512M", "3000000").
#pragma once

#include <string>

namespace vitruvian {

/// "8G", "512M" (powers of 1000; "GB", "MB", "g", "m" too) or a plain number of bytes; InputError
/// naming `option` and the text otherwise (also for zero or negative sizes).
double parse_byte_size(const std::string& text, const std::string& option);

}  // namespace vitruvian
