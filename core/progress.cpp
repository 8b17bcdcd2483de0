#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace vitruvian {
namespace {

std::string format_duration(double seconds) {
  const auto s = static_cast<std::int64_t>(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

}  // namespace

Progress::Progress(std::string what, std::int64_t total, bool enabled)
    : what_(std::move(what)),
      total_(std::max<std::int64_t>(total, 0)),
      enabled_(enabled && total > 0),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::advance(std::int64_t steps, const std::string& note) {
  done_ = std::min(total_, done_ + steps);
  note_ = note;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  // A terminal redraws at most ten times a second; a log gets a line every five seconds.
  const auto interval = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
  if (now - last_draw_ >= interval && done_ < total_) draw(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void Progress::draw(bool final) {
  last_draw_ = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(last_draw_ - start_).count();
  const double fraction = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  std::string eta;
  if (!final && done_ > 0 && done_ < total_) {
    eta = ", eta " + format_duration(elapsed / static_cast<double>(done_) * static_cast<double>(total_ - done_));
  }
  const std::string counts = fmt::format("{}/{} {} ({:.0f}%), {}{}", done_, total_, what_, 100.0 * fraction,
                                         format_duration(elapsed), eta);
  const std::string note = note_.empty() ? "" : "  " + note_;
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::fprintf(stderr, "\r\033[K[%s%s] %s%s%s", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(kWidth - filled), '.').c_str(), counts.c_str(), note.c_str(),
                 final ? "\n" : "");
  } else {
    std::fprintf(stderr, "progress: %s%s\n", counts.c_str(), note.c_str());
  }
  std::fflush(stderr);
}

}  // namespace vitruvian
