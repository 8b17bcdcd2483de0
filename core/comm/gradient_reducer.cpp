// Buckets are flat buffers of their parameters' gradients. A parameter's hook (which sees this
// pass's gradient before autograd adds it to .grad) copies grad + the .grad accumulated by
// earlier micro-steps into its slice; a full bucket is averaged asynchronously, and buckets go
// out in order.
#include "core/comm/gradient_reducer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <chrono>
#include <mutex>

#include "core/errors.h"

namespace vitruvian {

struct GradientReducer::State {
  struct Bucket {
    std::vector<std::size_t> params;
    std::vector<std::int64_t> offsets;  // element offset of each parameter in `buffer`
    at::Tensor buffer;
    std::size_t pending = 0;  // parameters still waiting for their gradient this step
    WorkHandle work;
  };
  std::vector<at::Tensor> params;
  std::vector<std::size_t> bucket_of, slot_of;
  std::vector<Bucket> buckets;
  std::vector<std::vector<std::size_t>> layout;
  std::vector<bool> received;
  std::vector<unsigned> hooks;  // hook handle of each parameter, removed with the reducer
  Communicator* comm = nullptr;
  bool sync = false, armed = false;
  std::size_t next_launch = 0;
  std::mutex mutex;  // hooks may run on autograd worker threads (CUDA)

  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      Bucket& b = buckets[next_launch++];
      b.work = comm->allreduce_async(b.buffer, ReduceOp::kAvg);
    }
  }

  void on_gradient(std::size_t index, const at::Tensor& grad) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || !sync || received[index] || !grad.defined()) return;  // undefined: finish() fills it in
    received[index] = true;
    Bucket& b = buckets[bucket_of[index]];
    const std::size_t slot = slot_of[index];
    at::Tensor view = b.buffer.narrow(0, b.offsets[slot], params[index].numel()).view(params[index].sizes());
    view.copy_(grad);
    const at::Tensor& earlier = params[index].grad();
    if (earlier.defined()) view.add_(earlier);
    if (--b.pending == 0) launch_ready();
  }
};

GradientReducer::GradientReducer(std::vector<at::Tensor> parameters, Communicator& comm, GradientReducerOptions options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.comm = &comm;
  for (auto& p : parameters) {
    if (p.requires_grad()) s.params.push_back(p);
  }
  if (options.first_bucket_bytes < 1 || options.bucket_bytes < 1 || options.last_bucket_bytes < 0) {
    throw ConfigError("gradient buckets", fmt::format("bucket sizes {}, {} and {} (last) bytes; expected positive sizes (the last may be 0)",
                                                      options.first_bucket_bytes, options.bucket_bytes, options.last_bucket_bytes));
  }
  s.bucket_of.resize(s.params.size());
  s.slot_of.resize(s.params.size());
  s.received.assign(s.params.size(), false);
  // The tail: parameters 0 .. tail − 1 (of one type) in at most last_bucket_bytes.
  std::size_t tail = 0;
  for (std::int64_t bytes = 0; tail < s.params.size(); ++tail) {
    bytes += static_cast<std::int64_t>(s.params[tail].nbytes());
    if (bytes > options.last_bucket_bytes || s.params[tail].scalar_type() != s.params[0].scalar_type()) break;
  }
  if (tail == s.params.size()) tail = 0;
  // Reverse order: the last layers' gradients are computed first.
  std::vector<State::Bucket> buckets;
  std::int64_t bytes = 0;
  for (std::size_t n = s.params.size(); n-- > 0;) {
    const at::Tensor& p = s.params[n];
    bool start_bucket = buckets.empty() || n + 1 == tail;
    if (!start_bucket && n >= tail) {  // the tail stays whole
      const std::int64_t limit = buckets.size() == 1 ? options.first_bucket_bytes : options.bucket_bytes;
      const bool full = bytes > 0 && bytes + static_cast<std::int64_t>(p.nbytes()) > limit;
      const bool other_type = p.scalar_type() != s.params[buckets.back().params.front()].scalar_type();
      start_bucket = full || other_type;
    }
    if (start_bucket) {
      buckets.emplace_back();
      bytes = 0;
    }
    State::Bucket& bucket = buckets.back();
    s.bucket_of[n] = buckets.size() - 1;
    s.slot_of[n] = bucket.params.size();
    bucket.offsets.push_back(bucket.params.empty() ? 0 : bucket.offsets.back() + s.params[bucket.params.back()].numel());
    bucket.params.push_back(n);
    bytes += static_cast<std::int64_t>(p.nbytes());
  }
  for (auto& b : buckets) {
    const at::Tensor& last = s.params[b.params.back()];
    b.buffer = at::zeros({b.offsets.back() + last.numel()}, last.options().requires_grad(false));
    s.layout.push_back(b.params);
  }
  s.buckets = std::move(buckets);
  for (std::size_t n = 0; n < s.params.size(); ++n) {
    State* raw = state_.get();
    s.hooks.push_back(s.params[n].register_hook([raw, n](const at::Tensor& grad) { raw->on_gradient(n, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  if (!state_) return;
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->armed = false;
  for (std::size_t n = 0; n < state_->params.size(); ++n) state_->params[n].remove_hook(state_->hooks[n]);
  for (auto& b : state_->buckets) {
    if (b.work) {
      try {
        b.work->wait();
      } catch (...) {  // the job is ending; nothing to report to
      }
    }
  }
}

void GradientReducer::prepare(bool sync) {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  s.sync = sync;
  s.armed = true;
  s.next_launch = 0;
  std::fill(s.received.begin(), s.received.end(), false);
  for (auto& b : s.buckets) {
    b.pending = b.params.size();
    b.work.reset();
  }
}

CommStats GradientReducer::finish() {
  State& s = *state_;
  CommStats stats;
  if (!s.sync) return stats;
  const auto start = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    // Parameters without a gradient this pass contribute zeros (the same buckets on every rank).
    for (std::size_t n = 0; n < s.params.size(); ++n) {
      if (s.received[n]) continue;
      State::Bucket& b = s.buckets[s.bucket_of[n]];
      at::Tensor view = b.buffer.narrow(0, b.offsets[s.slot_of[n]], s.params[n].numel());
      const at::Tensor& earlier = s.params[n].grad();
      if (earlier.defined()) {
        view.copy_(earlier.reshape({-1}));
      } else {
        view.zero_();
      }
      s.received[n] = true;
      --b.pending;
    }
    s.launch_ready();
    s.armed = false;
  }
  for (auto& b : s.buckets) {
    b.work->wait();
    const double busy = b.work->busy_seconds();
    if (busy > 0) stats.total_s += busy;
  }
  stats.exposed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats.buckets = static_cast<int>(s.buckets.size());
  for (std::size_t n = 0; n < s.params.size(); ++n) {
    const State::Bucket& b = s.buckets[s.bucket_of[n]];
    const at::Tensor averaged = b.buffer.narrow(0, b.offsets[s.slot_of[n]], s.params[n].numel()).view(s.params[n].sizes());
    at::Tensor& grad = s.params[n].mutable_grad();
    if (grad.defined()) {
      grad.copy_(averaged);
    } else {
      grad = averaged.clone();
    }
  }
  return stats;
}

const std::vector<std::vector<std::size_t>>& GradientReducer::buckets() const { return state_->layout; }

}  // namespace vitruvian
