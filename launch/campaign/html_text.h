// Text for the campaign's HTML pages.
#pragma once

#include <string>

namespace vitruvian::campaign {

/// `text` with <, >, & and " escaped for HTML.
std::string html_escape(const std::string& text);

}  // namespace vitruvian::campaign
