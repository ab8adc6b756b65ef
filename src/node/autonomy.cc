#include "node/autonomy.h"

#include <fmt/format.h>

namespace verge::node {

std::string_view LinkModeName(LinkMode m) {
  switch (m) {
    case LinkMode::kConnected:
      return "connected";
    case LinkMode::kDegraded:
      return "degraded";
    case LinkMode::kAutonomous:
      return "autonomous";
    case LinkMode::kResyncing:
      return "resyncing";
  }
  return "autonomous";
}

Autonomy::Autonomy(AutonomyOptions options, const Clock& clock) : options_(options), clock_(clock) {
  since_steady_ = last_heard_steady_ = clock_.SteadyMs();
  since_wall_ = clock_.WallMs();
}

void Autonomy::Move(LinkMode to, std::string reason) {
  if (to == mode_) return;
  int64_t now = clock_.SteadyMs();
  LinkTransition t;
  t.from = mode_;
  t.to = to;
  t.at_ms = clock_.WallMs();
  t.after_ms = now - since_steady_;
  t.reason = std::move(reason);
  total_ms_[static_cast<size_t>(mode_)] += t.after_ms;
  mode_ = to;
  since_steady_ = now;
  since_wall_ = t.at_ms;
  ++transitions_;
  recent_.push_back(t);
  while (recent_.size() > options_.history) recent_.pop_front();
  // Bounded too: a link flapping for days while nobody drains them must not grow memory.
  if (new_.size() >= 10'000) new_.erase(new_.begin());
  new_.push_back(std::move(t));
}

void Autonomy::AttemptFailed(const std::string& reason) {
  std::lock_guard lock(mu_);
  ++failures_;
  if (mode_ == LinkMode::kAutonomous) return;
  if (failures_ >= static_cast<uint64_t>(options_.after_failures)) {
    Move(LinkMode::kAutonomous, fmt::format("{} attempt{} failed in a row; last: {}", failures_,
                                            failures_ == 1 ? "" : "s", reason));
  } else if (mode_ != LinkMode::kDegraded) {
    Move(LinkMode::kDegraded, reason);
  }
}

void Autonomy::SessionUp(uint64_t cloud_version, uint64_t applied) {
  std::lock_guard lock(mu_);
  session_up_ = true;
  failures_ = 0;
  last_heard_steady_ = clock_.SteadyMs();
  last_heard_wall_ = clock_.WallMs();
  if (cloud_version == applied) {
    Move(LinkMode::kResyncing, "the cloud answered");
    Move(LinkMode::kConnected, fmt::format("desired state v{} is current", applied));
    return;
  }
  resync_target_ = cloud_version;
  Move(LinkMode::kResyncing,
       fmt::format("the cloud answered; fetching desired state v{} (have v{})", cloud_version,
                   applied));
}

void Autonomy::SessionDown(const std::string& reason) {
  std::lock_guard lock(mu_);
  session_up_ = false;
  resync_target_ = 0;
  if (mode_ == LinkMode::kConnected || mode_ == LinkMode::kResyncing)
    Move(LinkMode::kDegraded, reason);
}

void Autonomy::DesiredApplied(uint64_t version) {
  std::lock_guard lock(mu_);
  if (mode_ != LinkMode::kResyncing || !session_up_) return;
  resync_target_ = 0;
  Move(LinkMode::kConnected, fmt::format("desired state v{} applied", version));
}

void Autonomy::Heard() {
  std::lock_guard lock(mu_);
  last_heard_steady_ = clock_.SteadyMs();
  last_heard_wall_ = clock_.WallMs();
  if (session_up_ && (mode_ == LinkMode::kDegraded || mode_ == LinkMode::kAutonomous))
    Move(LinkMode::kConnected, "the cloud answers again");
}

void Autonomy::Tick() {
  std::lock_guard lock(mu_);
  int64_t silent = clock_.SteadyMs() - last_heard_steady_;
  if (mode_ != LinkMode::kAutonomous && silent >= options_.silence.count()) {
    Move(LinkMode::kAutonomous,
         fmt::format("no word from the cloud for {}", FormatDuration(Millis(silent))));
  } else if (mode_ == LinkMode::kConnected && session_up_ && silent >= options_.quiet.count()) {
    Move(LinkMode::kDegraded,
         fmt::format("no word from the cloud for {}", FormatDuration(Millis(silent))));
  }
}

AutonomySnapshot Autonomy::Snapshot() const {
  std::lock_guard lock(mu_);
  AutonomySnapshot s;
  s.mode = mode_;
  s.since_ms = since_wall_;
  s.in_state_ms = clock_.SteadyMs() - since_steady_;
  s.last_heard_ms = last_heard_wall_;
  s.failures = failures_;
  s.transitions = transitions_;
  s.total_ms = total_ms_;
  s.total_ms[static_cast<size_t>(mode_)] += s.in_state_ms;
  s.recent.assign(recent_.begin(), recent_.end());
  return s;
}

LinkMode Autonomy::mode() const {
  std::lock_guard lock(mu_);
  return mode_;
}

std::vector<LinkTransition> Autonomy::TakeNew() {
  std::lock_guard lock(mu_);
  return std::exchange(new_, {});
}

}  // namespace verge::node
