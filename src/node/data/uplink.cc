#include "node/data/uplink.h"

#include <spdlog/spdlog.h>

namespace verge::data {

UplinkSender::UplinkSender(UplinkBuffer& buffer, SendFn send, UplinkOptions options)
    : buffer_(buffer), send_(std::move(send)), options_(options) {}

UplinkSender::~UplinkSender() { Stop(); }

void UplinkSender::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Run(); });
}

void UplinkSender::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void UplinkSender::OnSession(bool up) {
  {
    std::lock_guard lock(mu_);
    up_ = up;
    ++session_;
    // Whatever was in flight on the old stream may or may not have arrived: send it again.
    in_flight_.clear();
    more_ = true;
    stats_.connected = up;
  }
  cv_.notify_all();
}

void UplinkSender::OnAck(const v1::UplinkAck& ack) {
  {
    std::lock_guard lock(mu_);
    acks_.insert(acks_.end(), ack.seqs().begin(), ack.seqs().end());
  }
  cv_.notify_all();
}

void UplinkSender::Notify() {
  {
    std::lock_guard lock(mu_);
    more_ = true;
  }
  cv_.notify_all();
}

UplinkStats UplinkSender::stats() const {
  std::lock_guard lock(mu_);
  UplinkStats s = stats_;
  s.in_flight = in_flight_.size();
  return s;
}

void UplinkSender::Refill(std::chrono::steady_clock::time_point now) {
  double rate = static_cast<double>(options_.rate_bytes_per_s);
  double elapsed = std::chrono::duration<double>(now - refilled_at_).count();
  tokens_ = std::min(rate, tokens_ + elapsed * rate);
  refilled_at_ = now;
}

void UplinkSender::Run() {
  auto next_expire = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_);
  refilled_at_ = std::chrono::steady_clock::now();
  tokens_ = static_cast<double>(options_.rate_bytes_per_s);
  for (;;) {
    auto wake = next_expire;
    for (const auto& [seq, sent] : in_flight_) wake = std::min(wake, sent + options_.ack_timeout);
    bool may_send = up_ && more_ && in_flight_.size() < options_.window;
    if (may_send) wake = std::min(wake, std::max(ready_at_, std::chrono::steady_clock::now()));
    cv_.wait_until(lock, wake, [&] {
      return stop_ || !acks_.empty() ||
             (up_ && more_ && in_flight_.size() < options_.window &&
              std::chrono::steady_clock::now() >= ready_at_);
    });
    if (stop_) return;
    auto now = std::chrono::steady_clock::now();
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      if (now - it->second >= options_.ack_timeout) {
        it = in_flight_.erase(it);
        ++stats_.ack_timeouts;
        more_ = true;
      } else {
        ++it;
      }
    }
    if (std::chrono::steady_clock::now() >= next_expire) {
      lock.unlock();
      if (auto st = buffer_.Expire(); !st.ok()) spdlog::warn("uplink buffer: {}", st.message());
      lock.lock();
      next_expire = std::chrono::steady_clock::now() + options_.expire_every;
    }
    if (!acks_.empty()) {
      std::vector<uint64_t> acks;
      acks.swap(acks_);
      lock.unlock();
      Status st = buffer_.Ack(acks);
      lock.lock();
      if (!st.ok()) {
        // The cloud has them; deleting failed (disk): they will be sent again and deduplicated.
        ++stats_.errors;
        stats_.last_error = st.message();
      }
      for (uint64_t seq : acks) {
        if (in_flight_.erase(seq)) ++stats_.acked;
        ever_sent_.erase(seq);
      }
      more_ = true;
    }
    if (!up_ || !more_ || in_flight_.size() >= options_.window) continue;
    std::vector<uint64_t> exclude;
    for (const auto& [seq, sent] : in_flight_) exclude.push_back(seq);
    size_t want = options_.window - in_flight_.size();
    bool limited = options_.rate_bytes_per_s > 0;
    if (limited) {
      if (std::chrono::steady_clock::now() < ready_at_) continue;
      want = 1;
    }
    uint64_t session = session_;
    lock.unlock();
    auto pending = buffer_.Pending(exclude, want);
    uint64_t low = buffer_.low_seq();
    lock.lock();
    if (!pending.ok()) {
      ++stats_.errors;
      stats_.last_error = pending.status().message();
      more_ = false;  // until the next commit or ack
      continue;
    }
    if (pending->size() < want) more_ = false;
    if (session != session_ || !up_) continue;  // the stream changed meanwhile
    for (auto& b : *pending) {
      v1::Envelope env;
      auto* u = env.mutable_uplink_batch();
      u->set_seq(b.seq);
      u->set_priority(b.priority);
      u->set_content(b.priority == v1::ALERTS   ? v1::BATCH_ALERTS
                     : b.priority == v1::EVENTS ? v1::BATCH_EVENTS
                                                : v1::BATCH_READINGS);
      u->set_count(b.count);
      u->set_codec(v1::CODEC_ZSTD);
      u->set_created_ms(b.created_ms);
      u->set_low_seq(low);
      u->set_data(std::move(b.data));
      in_flight_[b.seq] = std::chrono::steady_clock::now();
      if (!ever_sent_.insert(b.seq).second) ++stats_.resent;
      ++stats_.sent;
      size_t bytes = env.ByteSizeLong();
      stats_.bytes_sent += bytes;
      if (limited) {
        auto now = std::chrono::steady_clock::now();
        Refill(now);
        tokens_ -= static_cast<double>(bytes);
        if (tokens_ < 0) {
          ++stats_.rate_waits;
          ready_at_ = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                std::chrono::duration<double>(
                                    -tokens_ / static_cast<double>(options_.rate_bytes_per_s)));
        }
      }
      send_(std::move(env));
    }
    // ever_sent_ only needs the batches not yet acked; it stays within what the buffer holds.
    while (!ever_sent_.empty() && *ever_sent_.begin() < low) ever_sent_.erase(ever_sent_.begin());
  }
}

}  // namespace verge::data
