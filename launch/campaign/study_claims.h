// Claims that let several jobs (Slurm array tasks, separate mpiruns) share one campaign folder:
// before a rank starts a study it creates OUT/.claims/<id>.claim exclusively (O_CREAT|O_EXCL),
// naming itself, and keeps the file's mtime fresh from a heartbeat thread while it holds it. Other
// jobs leave a study with a live claim alone; a claim whose heartbeat is older than the timeout,
// or whose process is gone (same host), is taken over by exactly one job.
#pragma once

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace vitruvian::campaign {

/// Who holds a claim: the job (Slurm array task, Slurm job, else the mpirun), rank, host and
/// process, and the heartbeat timeout it runs under.
struct Claimer {
  std::string job;  ///< "slurm array 1234_5", "slurm job 1234", "mpirun job 567", "process host:pid"
  int rank = 0;
  std::string host;
  std::int64_t pid = 0;
  std::uint64_t started = 0;  ///< the process's start time (clock ticks since boot), against reused pids
  double timeout_s = 0;       ///< the claimer's claim timeout (its heartbeat comes every timeout/5)

  /// This process, as rank `rank` of its job, under `timeout_s`.
  static Claimer current(int rank, double timeout_s);
  /// "mpirun job 567, rank 1 on node-a (pid 4711)".
  std::string describe() const;
  nlohmann::json to_json() const;
  static Claimer from_json(const nlohmann::json& j);
};

/// The claims of one process (rank). Thread-safe.
class StudyClaims {
 public:
  enum class Result {
    kClaimed,       ///< this process holds the study now (no claim was there)
    kTakenOver,     ///< this process holds it now, taken from a stale claimer (logged)
    kHeldElsewhere  ///< a live claimer holds it: leave the study to it
  };

  /// Claims under OUT/.claims for this process as rank `rank`; `timeout_s` > 0
  /// (campaign.claim_timeout_s). Nothing is created until the first claim.
  StudyClaims(std::filesystem::path output, int rank, double timeout_s);
  /// Stops the heartbeat and releases every claim still held.
  ~StudyClaims();
  StudyClaims(const StudyClaims&) = delete;
  StudyClaims& operator=(const StudyClaims&) = delete;

  /// Tries to claim study `id`. Throws InputError naming the file when a claim cannot be
  /// created or read (not because another job holds it).
  Result claim(const std::string& id);
  /// Removes this process's claim of `id` (left alone when another job has taken it over
  /// meanwhile: logged). Never throws.
  void release(const std::string& id) noexcept;
  /// The live claimer of `id` (another process, or this one), or nothing when the study is not
  /// claimed or its claim is stale.
  std::optional<Claimer> live_claimer(const std::string& id) const;
  /// True when some study of the folder has a live claim (another job is working in it).
  bool any_live() const;

  /// Holds OUT/.claims/summary.lock while it lives: one job at a time gathers and writes the
  /// campaign summary. Waits for it (taking over a stale lock like a stale claim).
  class SummaryLock {
   public:
    explicit SummaryLock(StudyClaims& claims);
    ~SummaryLock();
    SummaryLock(const SummaryLock&) = delete;
    SummaryLock& operator=(const SummaryLock&) = delete;

   private:
    StudyClaims& claims_;
  };

  /// The file system's clock (seconds since the epoch): the claims folder's mtime, set to now. Claims are judged by it,
  /// so clocks that differ between nodes do not matter.
  double file_system_now() const;

  const std::filesystem::path& folder() const { return folder_; }
  double timeout_s() const { return self_.timeout_s; }
  const Claimer& self() const { return self_; }

 private:
  struct Seen;
  Result acquire(const std::string& file, const std::string& what);
  void release_file(const std::string& file, const std::string& what) noexcept;
  Seen inspect(const std::filesystem::path& path) const;
  bool take_over(const std::filesystem::path& path, const Seen& seen, const std::string& what);
  void heartbeat();

  std::filesystem::path folder_;
  Claimer self_;
  std::string self_text_;
  mutable std::mutex mutex_;
  std::map<std::string, int> held_;  ///< claim file name → its descriptor (under mutex_)
  std::uint64_t counter_ = 0;        ///< for unique names of claims being taken over
  bool stopping_ = false;
  std::condition_variable wake_;
  std::thread heartbeat_;
};

}  // namespace vitruvian::campaign
