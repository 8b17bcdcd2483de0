// The control plane's protocol. Call number s (counted alike on every rank) uses two tags of its
// own, so messages of different calls never match each other:
//   rank r > 0 -> rank 0, tag up(s):  header {s, op, kContribution, arg} + r's payload
//   rank 0 -> rank r, tag down(s):    {kAck} as soon as r's payload is in, then one of
//                                     {kAnswer} + answer, {kTimedOut} + why, {kRefused} + why
// Rank 0 waits for every payload until its deadline, then combines them and answers everyone.
// The ack tells a waiting rank that rank 0 is in the call, so it extends its own deadline past
// rank 0's and lets rank 0, which knows who is missing, be the one to report.
#include "core/comm/control_plane.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <memory>

#include "core/comm/p2p.h"
#include "core/errors.h"
#include "core/fault_injection.h"

namespace vitruvian {
namespace {

enum Kind : std::int32_t { kContribution = 1, kAck, kAnswer, kTimedOut, kRefused };

struct Header {
  std::uint64_t sequence;
  std::int32_t op;
  std::int32_t kind;
  std::int64_t arg;
};

/// Tags cycle through 2 x 16000 values, below the 32767 every MPI must allow.
constexpr std::uint64_t kTagCycle = 16000;

std::string pack(const Header& header, const std::string& payload) {
  std::string bytes(sizeof(Header) + payload.size(), '\0');
  std::memcpy(bytes.data(), &header, sizeof(Header));
  if (!payload.empty()) std::memcpy(bytes.data() + sizeof(Header), payload.data(), payload.size());
  return bytes;
}

/// Removes the header from `bytes` (leaving the payload) and returns it.
Header take_header(std::string& bytes) {
  Header header{};
  VITRUVIAN_INTERNAL_ASSERT(bytes.size() >= sizeof(Header),
                            "control plane message of " + std::to_string(bytes.size()) + " bytes");
  std::memcpy(&header, bytes.data(), sizeof(Header));
  bytes.erase(0, sizeof(Header));
  return header;
}

std::string to_bytes(const std::vector<std::int64_t>& values) {
  std::string bytes(values.size() * sizeof(std::int64_t), '\0');
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

std::vector<std::int64_t> from_bytes(const std::string& bytes) {
  std::vector<std::int64_t> values(bytes.size() / sizeof(std::int64_t));
  if (!values.empty()) std::memcpy(values.data(), bytes.data(), values.size() * sizeof(std::int64_t));
  return values;
}

/// "ranks 1 (node-a), 2 (node-b)": at most eight named, then a count.
std::string list_ranks(const std::vector<int>& ranks, const std::vector<std::string>& hosts) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks ";
  for (std::size_t i = 0; i < ranks.size() && i < 8; ++i) {
    text += (i == 0 ? "" : ", ") + rank_on_host(ranks[i], hosts).substr(5);  // without "rank "
  }
  if (ranks.size() > 8) text += " and " + std::to_string(ranks.size() - 8) + " more";
  return text;
}

}  // namespace

struct ControlPlane::Call {
  Op op;
  std::int64_t arg;
  const char* what;
  std::uint64_t sequence;
  SteadyClock::time_point start;

  int up() const { return static_cast<int>(sequence % kTagCycle) * 2; }
  int down() const { return up() + 1; }
  Header header(Kind kind) const { return Header{sequence, static_cast<std::int32_t>(op), kind, arg}; }
  /// "agree #4 (campaign set-up)".
  std::string str() const {
    static const char* const kNames[] = {"?", "agree", "broadcast", "all_max", "all_min", "barrier"};
    const auto index = static_cast<std::size_t>(op);
    std::string text = std::string(index < std::size(kNames) ? kNames[index] : "?") + " #" + std::to_string(sequence);
    return *what == '\0' ? text : text + " (" + what + ")";
  }
};

ControlPlane::ControlPlane(const MpiComm& comm, ControlPlaneOptions options)
    : comm_(comm.dup()), options_(std::move(options)), rank_(comm_.rank()), size_(comm_.size()) {
  if (!options_.on_timeout()) {
    throw InputError("ControlPlaneOptions::on_timeout",
                     "empty handler; keep the default end_job_on_timeout or pass one");
  }
  hosts_ = exchange_host_names(comm_);
}

Agreement ControlPlane::agree(const std::string& failure, const char* what) {
  const std::string answer = exchange(Op::kAgree, 0, what, failure, [](std::vector<std::string>& payloads) {
    for (std::size_t r = 0; r < payloads.size(); ++r) {
      if (payloads[r].empty()) continue;
      const auto rank = static_cast<std::int32_t>(r);
      return std::string(reinterpret_cast<const char*>(&rank), sizeof rank) + payloads[r];
    }
    return std::string();
  });
  Agreement agreement;
  if (answer.empty()) return agreement;
  std::int32_t rank = -1;
  std::memcpy(&rank, answer.data(), sizeof rank);
  agreement.ok = false;
  agreement.rank = rank;
  agreement.message = answer.substr(sizeof rank);
  return agreement;
}

std::string ControlPlane::broadcast(std::string bytes, int root, const char* what) {
  if (root < 0 || root >= size_) {
    throw InputError("ControlPlane::broadcast",
                     "root " + std::to_string(root) + " is not a rank of " + std::to_string(size_));
  }
  if (rank_ != root) bytes.clear();
  return exchange(Op::kBroadcast, root, what, std::move(bytes), [root](std::vector<std::string>& payloads) {
    return std::move(payloads[static_cast<std::size_t>(root)]);
  });
}

std::vector<std::int64_t> ControlPlane::all_max(std::vector<std::int64_t> values, const char* what) {
  return reduce(Op::kAllMax, std::move(values), what);
}

std::vector<std::int64_t> ControlPlane::all_min(std::vector<std::int64_t> values, const char* what) {
  return reduce(Op::kAllMin, std::move(values), what);
}

void ControlPlane::barrier(const char* what) {
  exchange(Op::kBarrier, 0, what, std::string(), [](std::vector<std::string>&) { return std::string(); });
}

std::vector<std::int64_t> ControlPlane::reduce(Op op, std::vector<std::int64_t> values, const char* what) {
  const auto count = static_cast<std::int64_t>(values.size());
  const std::string answer = exchange(op, count, what, to_bytes(values), [op](std::vector<std::string>& payloads) {
    std::vector<std::int64_t> result = from_bytes(payloads[0]);
    for (std::size_t r = 1; r < payloads.size(); ++r) {
      const std::vector<std::int64_t> other = from_bytes(payloads[r]);
      for (std::size_t i = 0; i < result.size(); ++i) {
        result[i] = op == Op::kAllMax ? std::max(result[i], other[i]) : std::min(result[i], other[i]);
      }
    }
    return to_bytes(result);
  });
  return from_bytes(answer);
}

std::string ControlPlane::exchange(Op op, std::int64_t arg, const char* what, std::string payload,
                                   const Combine& combine) {
  fault_point("control_plane");
  const Call call{op, arg, what == nullptr ? "" : what, ++sequence_, SteadyClock::now()};
  if (spent_) {
    throw TimeoutError(call.str(), "the control plane timed out in an earlier call; its ranks are no longer in step");
  }
  if (size_ == 1) {
    std::vector<std::string> payloads{std::move(payload)};
    return combine(payloads);
  }
  return rank_ == 0 ? serve(call, std::move(payload), combine) : await_answer(call, std::move(payload));
}

std::string ControlPlane::serve(const Call& call, std::string payload, const Combine& combine) {
  Outbox outbox;
  std::vector<std::string> payloads = gather(call, std::move(payload), outbox);
  std::string answer = combine(payloads);
  const auto bytes = std::make_shared<const std::string>(pack(call.header(kAnswer), answer));
  for (int r = 1; r < size_; ++r) outbox.send(comm_.get(), r, call.down(), bytes);
  const std::vector<int> late = outbox.flush(deadline_after(SteadyClock::now(), options_.timeout_s()));
  if (!late.empty()) time_out(call, list_ranks(late, hosts_) + " did not take the answer");
  return answer;
}

std::vector<std::string> ControlPlane::gather(const Call& call, std::string payload, Outbox& outbox) {
  std::vector<std::string> payloads(static_cast<std::size_t>(size_));
  std::vector<bool> heard(static_cast<std::size_t>(size_), false);
  payloads[0] = std::move(payload);
  heard[0] = true;
  int missing = size_ - 1;
  std::string refusal;  // the first rank whose call differs from rank 0's
  const auto deadline = deadline_after(call.start, options_.timeout_s());
  const auto ack = std::make_shared<const std::string>(pack(call.header(kAck), ""));
  // Ends the call on every rank heard from (the others may never read it) with `why`.
  const auto tell_those_heard = [&](Kind kind, const std::string& why) {
    const auto bytes = std::make_shared<const std::string>(pack(call.header(kind), why));
    for (int r = 1; r < size_; ++r) {
      if (heard[static_cast<std::size_t>(r)]) outbox.send(comm_.get(), r, call.down(), bytes);
    }
    outbox.flush(SteadyClock::now() + std::chrono::seconds(1));
  };
  Backoff backoff;
  while (missing > 0) {
    if (auto message = receive_if_arrived(comm_.get(), MPI_ANY_SOURCE, call.up())) {
      const Header header = take_header(message->bytes);
      if (refusal.empty() && (header.sequence != call.sequence || header.op != static_cast<std::int32_t>(call.op) ||
                              header.arg != call.arg)) {
        const Call theirs{static_cast<Op>(header.op), header.arg, "", header.sequence, call.start};
        refusal = rank_on_host(message->source, hosts_) + " made " + theirs.str() + " (argument " +
                  std::to_string(header.arg) + ") where rank 0 made " + call.str() + " (argument " +
                  std::to_string(call.arg) + "); every rank must make the same calls in the same order";
      }
      heard[static_cast<std::size_t>(message->source)] = true;
      payloads[static_cast<std::size_t>(message->source)] = std::move(message->bytes);
      outbox.send(comm_.get(), message->source, call.down(), ack);
      --missing;
      backoff.reset();
      continue;
    }
    if (SteadyClock::now() >= deadline) {
      std::vector<int> silent;
      for (int r = 1; r < size_; ++r) {
        if (!heard[static_cast<std::size_t>(r)]) silent.push_back(r);
      }
      const std::string why = "no word from " + list_ranks(silent, hosts_);
      tell_those_heard(kTimedOut, why);
      time_out(call, why);
    }
    backoff.wait();
  }
  if (!refusal.empty()) {
    tell_those_heard(kRefused, refusal);
    throw InternalError("ControlPlane", refusal);
  }
  return payloads;
}

std::string ControlPlane::await_answer(const Call& call, std::string payload) {
  Outbox outbox;
  outbox.send(comm_.get(), 0, call.up(),
              std::make_shared<const std::string>(pack(call.header(kContribution), payload)));
  payload.clear();
  auto deadline = deadline_after(call.start, options_.timeout_s());
  bool acknowledged = false;
  Backoff backoff;
  while (true) {
    if (auto message = receive_if_arrived(comm_.get(), 0, call.down())) {
      const Header header = take_header(message->bytes);
      switch (header.kind) {
        case kAck:
          // Rank 0 is in the call and reports by its own deadline; wait a little past that.
          acknowledged = true;
          deadline =
              deadline_after(SteadyClock::now(), options_.timeout_s() > 0 ? options_.timeout_s() * 1.1 + 1.0 : 0.0);
          backoff.reset();
          continue;
        case kAnswer:
          outbox.flush(SteadyClock::time_point::max());  // rank 0 has our payload: already sent
          return std::move(message->bytes);
        case kTimedOut:
          time_out(call, rank_on_host(0, hosts_) + " ended the call: " + message->bytes);
        default:
          throw InternalError("ControlPlane", "rank 0 refused " + call.str() + ": " + message->bytes);
      }
    }
    if (SteadyClock::now() >= deadline) {
      time_out(call, acknowledged ? rank_on_host(0, hosts_) + " took part but sent no answer"
                                  : "no answer from " + rank_on_host(0, hosts_) + ", which has not reached this call");
    }
    backoff.wait();
  }
}

void ControlPlane::time_out(const Call& call, const std::string& detail) {
  spent_ = true;
  const std::string message = describe_process() + " waited " + format_seconds(seconds_since(call.start)) + " " +
                              limit_note(options_.timeout_s()) + " in " + call.str() +
                              " on the control plane: " + detail;
  options_.on_timeout()(message);
  throw TimeoutError("ControlPlane", message);
}

}  // namespace vitruvian
