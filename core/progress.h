// Progress reporting for long work: a redrawn bar on a terminal, plain lines (at most one every
// few seconds, and at the end) when stderr is a file or a pipe. Shown by rank 0 only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace vitruvian {

class Progress {
 public:
  /// `total` steps of `what` ("studies", "steps"); shown only when `enabled` (pass rank == 0).
  Progress(std::string what, std::int64_t total, bool enabled);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Marks `steps` more steps done; `note` (e.g. the study just finished) is shown with them.
  void advance(std::int64_t steps = 1, const std::string& note = "");
  /// Ends the bar (a final line with the elapsed time). Called by the destructor if not before.
  void finish();

  std::int64_t done() const noexcept { return done_; }

 private:
  void draw(bool final);

  std::string what_;
  std::int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::string note_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace vitruvian
