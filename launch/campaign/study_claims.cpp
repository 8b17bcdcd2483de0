// Claim files: create-exclusive, a heartbeat through the open descriptor, takeover by rename.
#include "launch/campaign/study_claims.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/errors.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

/// What /proc/<pid>/stat says of a process: its state (field 3: 'R', 'S', 'T', 'Z' for a zombie...;
/// 0 when unreadable) and when it started (field 22, clock ticks since boot; 0 when unknown).
struct ProcessStat {
  char state = 0;
  std::uint64_t started = 0;
};

ProcessStat process_stat(std::int64_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ProcessStat out;
  const auto paren = text.rfind(')');
  if (paren == std::string::npos) return out;
  std::istringstream fields(text.substr(paren + 1));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 3) out.state = field[0];
    if (i == 22) out.started = std::strtoull(field.c_str(), nullptr, 10);
  }
  return out;
}

double seconds_of(const struct timespec& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

std::string error_text() { return std::strerror(errno); }

}  // namespace

Claimer Claimer::current(int rank, double timeout_s) {
  Claimer c;
  c.host = host_name();
  c.pid = static_cast<std::int64_t>(getpid());
  c.started = process_stat(c.pid).started;
  c.rank = rank;
  c.timeout_s = timeout_s;
  if (!env("SLURM_ARRAY_JOB_ID").empty() && !env("SLURM_ARRAY_TASK_ID").empty()) {
    c.job = "slurm array " + env("SLURM_ARRAY_JOB_ID") + "_" + env("SLURM_ARRAY_TASK_ID");
  } else if (!env("SLURM_JOB_ID").empty()) {
    c.job = "slurm job " + env("SLURM_JOB_ID");
  } else if (!env("OMPI_MCA_ess_base_jobid").empty()) {
    c.job = "mpirun job " + env("OMPI_MCA_ess_base_jobid");
  } else {
    c.job = fmt::format("process {}:{}", c.host, c.pid);
  }
  return c;
}

std::string Claimer::describe() const { return fmt::format("{}, rank {} on {} (pid {})", job, rank, host, pid); }

json Claimer::to_json() const {
  return {{"job", job}, {"rank", rank}, {"host", host}, {"pid", pid}, {"started", started}, {"timeout_s", timeout_s}};
}

Claimer Claimer::from_json(const json& j) {
  Claimer c;
  c.job = j.value("job", "unknown job");
  c.rank = j.value("rank", 0);
  c.host = j.value("host", "");
  c.pid = j.value("pid", std::int64_t{0});
  c.started = j.value("started", std::uint64_t{0});
  c.timeout_s = j.value("timeout_s", 0.0);
  return c;
}

/// What a look at a claim file found.
struct StudyClaims::Seen {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  std::optional<Claimer> claimer;  ///< nothing while its writer has not written it yet
  bool stale = false;
  std::string why;  ///< why it is stale
};

StudyClaims::StudyClaims(fs::path output, int rank, double timeout_s)
    : folder_(std::move(output) / ".claims"),
      self_(Claimer::current(rank, timeout_s)),
      self_text_(self_.to_json().dump() + "\n") {}

StudyClaims::~StudyClaims() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  std::vector<std::string> files;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [file, fd] : held_) files.push_back(file);
  }
  for (const auto& file : files) release_file(file, file);
}

StudyClaims::Result StudyClaims::claim(const std::string& id) { return acquire(id + ".claim", "study " + id); }

void StudyClaims::release(const std::string& id) noexcept { release_file(id + ".claim", "study " + id); }

StudyClaims::Result StudyClaims::acquire(const std::string& file, const std::string& what) {
  std::error_code error;
  fs::create_directories(folder_, error);
  if (error) throw InputError(folder_.string(), "cannot create the claims folder: " + error.message());
  const fs::path path = folder_ / file;
  bool taken = false;
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      if (::write(fd, self_text_.data(), self_text_.size()) != static_cast<ssize_t>(self_text_.size())) {
        const std::string why = error_text();
        ::close(fd);
        ::unlink(path.c_str());
        throw InputError(path.string(), "cannot write the claim: " + why);
      }
      std::lock_guard<std::mutex> lock(mutex_);
      held_[file] = fd;
      if (!heartbeat_.joinable()) heartbeat_ = std::thread([this] { heartbeat(); });
      return taken ? Result::kTakenOver : Result::kClaimed;
    }
    if (errno != EEXIST) throw InputError(path.string(), "cannot create the claim: " + error_text());
    const Seen seen = inspect(path);
    if (!seen.exists) continue;  // released meanwhile: try again
    if (!seen.stale) return Result::kHeldElsewhere;
    taken = take_over(path, seen, what) || taken;
  }
  return Result::kHeldElsewhere;  // contended by several takers: leave it to the winner
}

StudyClaims::Seen StudyClaims::inspect(const fs::path& path) const {
  Seen seen;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return seen;
    throw InputError(path.string(), "cannot read the claim: " + error_text());
  }
  struct stat st {};
  std::string text;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) text.append(buffer, static_cast<std::size_t>(n));
  const bool stat_ok = ::fstat(fd, &st) == 0;
  ::close(fd);
  if (!stat_ok) throw InputError(path.string(), "cannot read the claim: " + error_text());
  seen.exists = true;
  seen.dev = st.st_dev;
  seen.ino = st.st_ino;
  try {
    if (!text.empty()) seen.claimer = Claimer::from_json(json::parse(text));
  } catch (const std::exception&) {
    // Half written (its writer is between create and write): judged by its heartbeat alone.
  }
  if (seen.claimer && seen.claimer->host == self_.host && seen.claimer->pid > 0) {
    // Gone: no such process, a zombie (killed, not yet reaped), or a younger process with its pid.
    const auto pid = static_cast<pid_t>(seen.claimer->pid);
    const bool exists = ::kill(pid, 0) == 0 || errno == EPERM;
    const ProcessStat now = exists ? process_stat(seen.claimer->pid) : ProcessStat{};
    const bool reused = seen.claimer->started != 0 && now.started != 0 && now.started != seen.claimer->started;
    if (!exists || now.state == 'Z' || now.state == 'X' || reused) {
      seen.stale = true;
      seen.why = "its process is gone";
      return seen;
    }
  }
  const double limit = std::max(self_.timeout_s, seen.claimer ? seen.claimer->timeout_s : 0.0);
  const double age = file_system_now() - seconds_of(st.st_mtim);
  if (age > limit) {
    seen.stale = true;
    seen.why = fmt::format("no heartbeat for {:.1f} s, timeout {:g} s", age, limit);
  }
  return seen;
}

bool StudyClaims::take_over(const fs::path& path, const Seen& seen, const std::string& what) {
  std::uint64_t n = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    n = counter_++;
  }
  const fs::path aside =
      folder_ / fmt::format(".{}.stale.{}.{}.{}", path.filename().string(), self_.host, self_.pid, n);
  if (::rename(path.c_str(), aside.c_str()) != 0) {
    if (errno == ENOENT) return false;  // another job took it first
    throw InputError(path.string(), "cannot take over the stale claim: " + error_text());
  }
  struct stat st {};
  if (::stat(aside.c_str(), &st) != 0 || st.st_dev != seen.dev || st.st_ino != seen.ino) {
    // Between the look and the rename another job took it over and claimed afresh: put its
    // claim back (unless yet another has been created since) and leave the study to it.
    if (::link(aside.c_str(), path.c_str()) != 0 && errno != EEXIST) {
      spdlog::warn("{}: could not put back the claim {}: {}", what, path.string(), error_text());
    }
    ::unlink(aside.c_str());
    return false;
  }
  ::unlink(aside.c_str());
  spdlog::warn("{}: taking over the claim of {} ({})", what, seen.claimer ? seen.claimer->describe() : "an unknown job",
               seen.why);
  return true;
}

void StudyClaims::release_file(const std::string& file, const std::string& what) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = held_.find(file);
  if (it == held_.end()) return;
  const fs::path path = folder_ / file;
  struct stat mine {
  }, there{};
  if (::fstat(it->second, &mine) == 0 && ::stat(path.c_str(), &there) == 0 && mine.st_dev == there.st_dev &&
      mine.st_ino == there.st_ino) {
    if (::unlink(path.c_str()) != 0)
      spdlog::warn("{}: cannot remove the claim {}: {}", what, path.string(), error_text());
  } else {
    spdlog::warn(
        "{}: another job took over this process's claim (its heartbeat had stopped for longer than the timeout)", what);
  }
  ::close(it->second);
  held_.erase(it);
}

std::optional<Claimer> StudyClaims::live_claimer(const std::string& id) const {
  const Seen seen = inspect(folder_ / (id + ".claim"));
  if (!seen.exists || seen.stale) return std::nullopt;
  if (seen.claimer) return seen.claimer;
  Claimer unknown;
  unknown.job = "a job whose claim is being written";
  return unknown;
}

bool StudyClaims::any_live() const {
  std::error_code error;
  for (fs::directory_iterator it(folder_, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.' || it->path().extension() != ".claim") continue;
    const Seen seen = inspect(it->path());
    if (seen.exists && !seen.stale) return true;
  }
  return false;
}

double StudyClaims::file_system_now() const {
  // Setting the claims folder's mtime to "now" and reading it back asks the file system's clock
  // (on NFS the server's), the clock the claims' heartbeats are stamped with.
  std::error_code error;
  fs::create_directories(folder_, error);
  struct stat st {};
  if (::utimensat(AT_FDCWD, folder_.c_str(), nullptr, 0) != 0 || ::stat(folder_.c_str(), &st) != 0) {
    throw InputError(folder_.string(), "cannot read the file system's time: " + error_text());
  }
  return seconds_of(st.st_mtim);
}

void StudyClaims::heartbeat() {
  const auto interval = std::chrono::duration<double>(std::max(self_.timeout_s / 5, 0.01));
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, interval, [this] { return stopping_; })) {
    for (const auto& [file, fd] : held_) {
      if (::futimens(fd, nullptr) != 0)
        spdlog::warn("heartbeat of the claim {}: {}", (folder_ / file).string(), error_text());
    }
  }
}

StudyClaims::SummaryLock::SummaryLock(StudyClaims& claims) : claims_(claims) {
  while (claims_.acquire("summary.lock", "the campaign summary") == Result::kHeldElsewhere) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

StudyClaims::SummaryLock::~SummaryLock() { claims_.release_file("summary.lock", "the campaign summary"); }

}  // namespace vitruvian::campaign
