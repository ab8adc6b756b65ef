#include "cloud/link_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <functional>

#include "cloud/alerts.h"
#include "cloud/api_json.h"
#include "cloud/app_document.h"
#include "cloud/device_spec.h"
#include "cloud/rule_spec.h"
#include "cloud/telemetry_codec.h"

namespace verge::cloud {

std::string GoodbyeFrame(v1::Goodbye::Reason reason, const std::string& message) {
  v1::Envelope env;
  auto* g = env.mutable_goodbye();
  g->set_reason(reason);
  g->set_message(message);
  return env.SerializeAsString();
}

class LinkService::Conn final : public LinkService::Connection,
                                public std::enable_shared_from_this<LinkService::Conn> {
 public:
  Conn(LinkService& svc, std::shared_ptr<LinkStream> stream, PeerIdentity peer)
      : svc_(svc), stream_(std::move(stream)), peer_(std::move(peer)) {}

  void OnMessage(std::string_view frame) override {
    v1::Envelope env;
    if (!env.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
      ++svc_.counters_.bad_frames;
      Fail(v1::Goodbye::PROTOCOL_ERROR, "frame is not a verge.v1 Envelope");
      return;
    }
    if (!hello_done_) {
      if (env.body_case() != v1::Envelope::kHello) {
        Fail(v1::Goodbye::PROTOCOL_ERROR, "the first message must be Hello");
        return;
      }
      HandleHello(env);
      return;
    }
    switch (env.body_case()) {
      case v1::Envelope::kHeartbeat:
        HandleHeartbeat(env);
        break;
      case v1::Envelope::kGoodbye:
        spdlog::info("node {} said goodbye: {}", peer_.common_name, env.goodbye().message());
        goodbye_ = "node said goodbye: " + env.goodbye().message().substr(0, 200);
        stream_->Close();
        break;
      case v1::Envelope::kHello:
        Fail(v1::Goodbye::PROTOCOL_ERROR, "Hello sent twice");
        break;
      case v1::Envelope::kStateReport:
        HandleStateReport(env.state_report());
        break;
      case v1::Envelope::kUplinkBatch:
        HandleUplink(*env.mutable_uplink_batch());
        break;
      case v1::Envelope::kLogData:
        svc_.OnLogData(peer_.common_name, env.in_reply_to(), env.log_data());
        break;
      default:
        // A message kind from a newer node: ignore it, as the compatibility rule says.
        ++svc_.counters_.unknown_messages;
        break;
    }
  }

  void OnClosed(const std::string& reason) override {
    // A stream the node has already replaced (it reconnected before this one's end was
    // noticed) says nothing about the node: only the current one's end is a disconnect.
    if (hello_done_ && svc_.Detach(peer_.common_name, this)) {
      svc_.registry_.OnDisconnected(peer_.common_name, !goodbye_.empty() ? goodbye_
                                                       : reason.empty()  ? "link closed"
                                                                         : reason);
    }
  }

  // Sends a request envelope once the stream is past its Hello; `registered` learns its id
  // before it is sent (an answer may come back at once).
  std::optional<uint64_t> SendRequest(v1::Envelope env,
                                      const std::function<void(uint64_t)>& registered) {
    std::lock_guard lock(push_mu_);
    if (!hello_acked_) return std::nullopt;
    env.set_id(++next_id_);
    registered(env.id());
    stream_->Send(env.SerializeAsString());
    return env.id();
  }

  void SendGoodbye(v1::Goodbye::Reason reason, const std::string& message) {
    stream_->Send(GoodbyeFrame(reason, message));
    stream_->Close();
  }

  // Sends the node's desired state if it is newer than what this stream sent. Called from
  // API threads (device changes); the Hello path sends the first document itself.
  void PushDesiredState() {
    std::lock_guard lock(push_mu_);
    if (!hello_acked_) return;  // the Hello path reads the newest state after this change
    auto ds = ReadDesiredState();
    if (!ds.ok()) {
      spdlog::error("reading the desired state of node {}: {}", peer_.common_name,
                    ds.status().message());
      return;
    }
    if (ds->version <= sent_version_) return;
    SendDesiredState(*ds);
  }

 private:
  void Fail(v1::Goodbye::Reason reason, const std::string& message) {
    spdlog::warn("closing stream of {} ({}): {}", peer_.common_name, peer_.remote_ip, message);
    SendGoodbye(reason, message);
  }

  void HandleHello(const v1::Envelope& env) {
    const auto& h = env.hello();
    if (h.node_name() != peer_.common_name) {
      Fail(v1::Goodbye::IDENTITY_MISMATCH,
           fmt::format("Hello names node \"{}\" but the certificate is for \"{}\"",
                       h.node_name().substr(0, 64), peer_.common_name));
      return;
    }
    if (!svc_.registry_.CertIsCurrent(peer_.common_name, peer_.serial_hex)) {
      Fail(v1::Goodbye::IDENTITY_MISMATCH,
           "this certificate is not the current one of a registered node");
      return;
    }
    NodeReport r;
    const auto& info = h.info();
    r.type = info.type();
    if (r.type != "gateway" && r.type != "server" && r.type != "micro") r.type = "gateway";
    r.region = info.region();
    for (const auto& [k, v] : info.labels()) {
      if (ValidateLabel(k, v).ok()) r.labels[k] = v;
    }
    r.capabilities.assign(info.capabilities().begin(), info.capabilities().end());
    r.capacity =
        Resources{info.capacity().cpu_millicores(), info.capacity().memory_mb(),
                  info.capacity().storage_gb(), info.capacity().gpu(), info.capacity().npu()};
    r.addresses.assign(info.addresses().begin(), info.addresses().end());
    r.agent_version = h.agent_version();
    r.hostname = info.hostname();
    r.os = info.os();
    r.arch = info.arch();
    if (auto st = svc_.registry_.OnConnected(peer_.common_name, r, peer_.remote_ip); !st.ok()) {
      Fail(v1::Goodbye::IDENTITY_MISMATCH, st.message());
      return;
    }
    hello_done_ = true;
    ++svc_.counters_.hellos;
    svc_.Attach(peer_.common_name, shared_from_this());

    // Under push_mu_ from the read to the sends, so that a device change committed meanwhile
    // is either in this read or pushed after it, never sent before the HelloAck.
    std::lock_guard lock(push_mu_);
    const uint64_t node_version = h.resume().desired_version();
    auto ds = ReadDesiredState();
    if (ds.ok() && node_version > ds->version) {
      // The node has a version this cloud never issued (a restored backup, a re-joined name):
      // move past it, so that what the node gets next is newer than anything it holds.
      auto v = svc_.store_.RaiseDesiredVersion(peer_.common_name, node_version);
      if (v.ok()) {
        ds->version = *v;
        svc_.registry_.OnDesiredVersion(peer_.common_name, *v);
      } else {
        ds = v.status();
      }
    }
    auto stored_seq = svc_.store_.UplinkStoredSeq(peer_.common_name);
    const uint64_t next_seq = h.resume().uplink_next_seq();
    if (stored_seq.ok() && next_seq > 0 && next_seq <= *stored_seq) {
      // The node will use seqs the cloud already holds: it lost its uplink buffer and numbers
      // afresh. Its coming batches are new readings; deduplicating them against the old ones
      // would acknowledge them without storing them.
      std::string why = fmt::format(
          "the node numbers uplink batches from {} again, but the cloud has stored up to {}; "
          "forgetting the old numbers so that new batches are not taken for duplicates",
          next_seq, *stored_seq);
      spdlog::warn("node {}: {}", peer_.common_name, why);
      svc_.registry_.RecordEvent(peer_.common_name, "uplink_reset", why);
      Status reset = svc_.store_.ResetUplink(peer_.common_name);
      stored_seq = reset.ok() ? Result<uint64_t>(uint64_t{0}) : Result<uint64_t>(reset);
    }
    if (!ds.ok() || !stored_seq.ok()) {
      const Status& st = !ds.ok() ? ds.status() : stored_seq.status();
      spdlog::error("reading the state of node {} for its Hello: {}", peer_.common_name,
                    st.message());
      SendGoodbye(v1::Goodbye::SHUTTING_DOWN, "the cloud cannot read its store; retry later");
      return;
    }

    v1::Envelope reply;
    reply.set_in_reply_to(env.id());
    auto* ack = reply.mutable_hello_ack();
    ack->set_protocol_version(std::min(h.protocol_version(), kProtocolVersion));
    ack->set_cloud_time_ms(svc_.clock_.WallMs());
    ack->set_desired_version(ds->version);
    ack->set_uplink_stored_seq(*stored_seq);
    for (const auto& f : h.features()) {
      if (std::find(std::begin(kCloudFeatures), std::end(kCloudFeatures), f) !=
          std::end(kCloudFeatures)) {
        ack->add_features(f);
      }
    }
    stream_->Send(reply.SerializeAsString());
    hello_acked_ = true;
    sent_version_ = node_version;
    // Version 0 on both sides: nothing was ever declared, nothing to send.
    if (ds->version != node_version) SendDesiredState(*ds);
    spdlog::info("node {} connected from {} (agent {}, desired state {} of {})", peer_.common_name,
                 peer_.remote_ip, h.agent_version(), node_version, ds->version);
  }

  // The node's desired state, with the rules its current labels select.
  Result<DesiredState> ReadDesiredState() {
    return svc_.store_.GetDesiredState(
        peer_.common_name, svc_.registry_.NodeLabels(peer_.common_name).value_or(Labels()));
  }

  // REQUIRES: push_mu_ held.
  void SendDesiredState(const DesiredState& ds) {
    v1::Envelope env;
    env.set_id(++next_id_);
    auto* d = env.mutable_desired_state();
    d->set_version(ds.version);
    for (const auto& dev : ds.devices) DeviceToProto(dev, d->add_devices());
    for (const auto& rule : ds.rules) RuleToProto(rule, d->add_rules());
    d->set_has_workloads(true);
    for (const auto& w : ds.workloads) {
      // A revision the store holds was validated when it was applied; one that no longer
      // parses (a downgrade) is left out and logged rather than sent half-understood.
      if (auto st = WorkloadToProto(w, d->add_workloads()); !st.ok()) {
        d->mutable_workloads()->RemoveLast();
        spdlog::error("app {} revision {} for node {}: {}", w.placement.app, w.placement.revision,
                      peer_.common_name, st.message());
      }
    }
    stream_->Send(env.SerializeAsString());
    sent_version_ = ds.version;
    ++svc_.counters_.desired_states_sent;
  }

  void HandleStateReport(const v1::StateReport& report) {
    ++svc_.counters_.state_reports;
    std::optional<std::vector<RuleStatusRecord>> rules;
    if (report.has_rules()) {
      int64_t now_ms = svc_.clock_.WallMs();
      rules.emplace();
      rules->reserve(static_cast<size_t>(report.rules_size()));
      for (const auto& r : report.rules()) {
        rules->push_back(RuleStatusFromProto(peer_.common_name, r, now_ms));
      }
    }
    std::optional<std::vector<WorkloadStatusRecord>> workloads;
    if (report.has_workloads()) {
      int64_t now_ms = svc_.clock_.WallMs();
      workloads.emplace();
      workloads->reserve(static_cast<size_t>(report.workloads_size()));
      for (const auto& w : report.workloads()) {
        workloads->push_back(WorkloadStatusFromProto(peer_.common_name, w, now_ms));
      }
    }
    svc_.registry_.OnStateReport(peer_.common_name, report.applied_version(),
                                 ClipUtf8(report.error(), 2000), std::move(rules),
                                 std::move(workloads));
  }

  // What the TelemetryWriter stores for a batch, or why it never can.
  Result<Store::UplinkRecord> Decode(v1::UplinkBatch& batch) {
    switch (batch.content()) {
      case v1::BATCH_READINGS: {
        auto summary = VisitUplink(batch, nullptr);
        if (!summary.ok()) return summary.status();
        svc_.counters_.uplink_readings += summary->count;
        return StageUplink(peer_.common_name, std::move(batch), *summary);
      }
      case v1::BATCH_ALERTS: {
        auto alerts = DecodeAlertBatch(batch, peer_.common_name, svc_.clock_.WallMs());
        if (!alerts.ok()) return alerts.status();
        svc_.counters_.uplink_alerts += alerts->size();
        Store::UplinkRecord rec;
        rec.node = peer_.common_name;
        rec.seq = batch.seq();
        rec.low_seq = batch.low_seq();
        rec.count = alerts->size();
        rec.is_alerts = true;
        rec.alerts = std::move(*alerts);
        return rec;
      }
      case v1::BATCH_EVENTS: {
        auto events = DecodeNodeEventBatch(batch, peer_.common_name);
        if (!events.ok()) return events.status();
        Store::UplinkRecord rec;
        rec.node = peer_.common_name;
        rec.seq = batch.seq();
        rec.low_seq = batch.low_seq();
        rec.count = events->size();
        rec.is_events = true;
        rec.events = std::move(*events);
        return rec;
      }
      default:
        return Error(Code::kInvalidArgument, "unknown batch content {}",
                     static_cast<int>(batch.content()));
    }
  }

  void HandleUplink(v1::UplinkBatch& batch) {
    ++svc_.counters_.uplink_batches;
    auto decoded = Decode(batch);
    if (!decoded.ok()) {
      // It can never become valid: acknowledge it, so that the node stops resending it.
      ++svc_.counters_.bad_batches;
      // One event and log line a minute per link at most: a node that keeps sending bad
      // batches must not flood its event history (which keeps only the newest) or the log.
      int64_t now_ms = svc_.clock_.WallMs();
      if (last_reject_event_ms_ != 0 && now_ms - last_reject_event_ms_ < kRejectEventEveryMs) {
        ++rejects_not_reported_;
      } else {
        std::string why = ClipUtf8(decoded.status().message(), 300);
        std::string more =
            rejects_not_reported_ == 0
                ? ""
                : fmt::format(" ({} more rejected since the last report)", rejects_not_reported_);
        spdlog::warn("node {}: rejected uplink batch {}: {}{}", peer_.common_name, batch.seq(), why,
                     more);
        svc_.registry_.RecordEvent(
            peer_.common_name, "batch_rejected",
            fmt::format("uplink batch {} rejected: {}{}", batch.seq(), why, more));
        last_reject_event_ms_ = now_ms;
        rejects_not_reported_ = 0;
      }
      v1::Envelope ack;
      ack.mutable_uplink_ack()->add_seqs(batch.seq());
      stream_->Send(ack.SerializeAsString());
      return;
    }
    TelemetryWriter::Job job{std::move(*decoded), stream_};
    if (!svc_.telemetry_.Submit(std::move(job))) {
      // The store is far behind: close, and let the node resend after a pause.
      spdlog::warn("node {}: telemetry queue full; closing its stream", peer_.common_name);
      v1::Envelope env;
      auto* g = env.mutable_goodbye();
      g->set_reason(v1::Goodbye::SHUTTING_DOWN);
      g->set_message("the cloud's telemetry queue is full; resend after reconnecting");
      g->set_retry_after_ms(5000);
      stream_->Send(env.SerializeAsString());
      stream_->Close();
    }
  }

  void HandleHeartbeat(const v1::Envelope& env) {
    ++svc_.counters_.heartbeats;
    const auto& hb = env.heartbeat();
    std::optional<Resources> used;
    if (hb.has_used()) {
      used = Resources{hb.used().cpu_millicores(), hb.used().memory_mb(), hb.used().storage_gb(),
                       hb.used().gpu(), hb.used().npu()};
    }
    svc_.registry_.OnHeartbeat(peer_.common_name, used);
    if (hb.want_ack()) {
      v1::Envelope reply;
      reply.set_in_reply_to(env.id());
      reply.mutable_ack()->set_cloud_time_ms(svc_.clock_.WallMs());
      stream_->Send(reply.SerializeAsString());
    }
  }

  LinkService& svc_;
  std::shared_ptr<LinkStream> stream_;
  PeerIdentity peer_;
  bool hello_done_ = false;
  std::string goodbye_;  // why the node said it was leaving, if it did
  // Rejected batches (read on the link's strand only).
  static constexpr int64_t kRejectEventEveryMs = 60'000;
  int64_t last_reject_event_ms_ = 0;
  uint64_t rejects_not_reported_ = 0;

  std::mutex push_mu_;         // orders desired-state sends (strand and API threads)
  bool hello_acked_ = false;   // GUARDED_BY(push_mu_)
  uint64_t sent_version_ = 0;  // GUARDED_BY(push_mu_); what the node has or was sent
  uint64_t next_id_ = 0;       // GUARDED_BY(push_mu_)
};

LinkService::LinkService(Registry& registry, Store& store, TelemetryWriter& telemetry,
                         const Clock& clock)
    : registry_(registry), store_(store), telemetry_(telemetry), clock_(clock) {}

struct LinkService::LogWait {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<LogChunk> chunks;  // GUARDED_BY(mu)
  size_t bytes = 0;              // GUARDED_BY(mu)
  bool done = false;             // GUARDED_BY(mu)
  std::string error;             // GUARDED_BY(mu)
};

Result<std::vector<LinkService::LogChunk>> LinkService::RequestLogs(
    const std::string& node, const v1::LogRequest& request, std::chrono::milliseconds timeout) {
  std::shared_ptr<Conn> conn;
  {
    std::lock_guard lock(mu_);
    auto it = streams_.find(node);
    if (it != streams_.end()) conn = it->second.lock();
  }
  if (!conn) return Error(Code::kUnavailable, "node \"{}\" is not connected", node);
  auto wait = std::make_shared<LogWait>();
  v1::Envelope env;
  *env.mutable_log_request() = request;
  uint64_t id = 0;
  auto sent = conn->SendRequest(std::move(env), [&](uint64_t assigned) {
    id = assigned;
    std::lock_guard lock(logs_mu_);
    log_waits_[{node, id}] = wait;
  });
  if (!sent) return Error(Code::kUnavailable, "node \"{}\" is not connected yet", node);
  auto forget = [&] {
    std::lock_guard lock(logs_mu_);
    log_waits_.erase({node, id});
  };
  std::unique_lock lock(wait->mu);
  bool done = wait->cv.wait_for(lock, timeout, [&] { return wait->done; });
  std::vector<LogChunk> chunks = std::move(wait->chunks);
  std::string error = wait->error;
  lock.unlock();
  forget();
  if (!done) return Error(Code::kDeadlineExceeded, "node \"{}\" did not answer in time", node);
  if (!error.empty() && chunks.empty()) return Error(Code::kNotFound, "{}: {}", node, error);
  return chunks;
}

void LinkService::OnLogData(const std::string& node, uint64_t request_id, const v1::LogData& data) {
  std::shared_ptr<LogWait> wait;
  {
    std::lock_guard lock(logs_mu_);
    auto it = log_waits_.find({node, request_id});
    if (it != log_waits_.end()) wait = it->second;
  }
  if (!wait) return;  // late: the caller gave up
  std::lock_guard lock(wait->mu);
  // Bounds what one answer can make the cloud hold.
  constexpr size_t kMaxBytes = size_t{64} << 20;
  if (!data.workload().empty() && wait->bytes + data.data().size() <= kMaxBytes) {
    if (!wait->chunks.empty() && wait->chunks.back().workload == data.workload()) {
      wait->chunks.back().data += data.data();
      wait->chunks.back().offset = data.offset();
    } else {
      wait->chunks.push_back({data.workload(), data.data(), data.offset()});
    }
    wait->bytes += data.data().size();
  }
  if (data.last()) {
    wait->done = true;
    wait->error = data.error();
    wait->cv.notify_all();
  }
}

void LinkService::DesiredStateChanged(const std::string& node) {
  std::shared_ptr<Conn> conn;
  {
    std::lock_guard lock(mu_);
    auto it = streams_.find(node);
    if (it == streams_.end()) return;
    conn = it->second.lock();
  }
  if (conn) conn->PushDesiredState();
}

Status LinkService::Authorize(const PeerIdentity& peer) {
  Status st = Check(peer);
  if (!st.ok()) ++counters_.streams_refused;
  return st;
}

Status LinkService::Check(const PeerIdentity& peer) const {
  if (peer.common_name.empty()) {
    return Error(Code::kUnauthenticated,
                 "the link needs a client certificate issued by this cloud (join first)");
  }
  if (registry_.IsRevoked(peer.serial_hex)) {
    return Error(Code::kPermissionDenied,
                 "certificate {} of node \"{}\" has been revoked (the node was decommissioned)",
                 peer.serial_hex, peer.common_name);
  }
  if (!registry_.CertIsCurrent(peer.common_name, peer.serial_hex)) {
    return Error(Code::kPermissionDenied,
                 "certificate {} is not the current certificate of a registered node \"{}\"",
                 peer.serial_hex, peer.common_name);
  }
  return Status::Ok();
}

std::shared_ptr<LinkService::Connection> LinkService::Open(std::shared_ptr<LinkStream> stream,
                                                           PeerIdentity peer) {
  ++counters_.streams_opened;
  return std::make_shared<Conn>(*this, std::move(stream), std::move(peer));
}

void LinkService::Attach(const std::string& node, const std::shared_ptr<Conn>& conn) {
  std::shared_ptr<Conn> old;
  {
    std::lock_guard lock(mu_);
    auto& slot = streams_[node];
    old = slot.lock();
    slot = conn;
  }
  if (old && old != conn) {
    old->SendGoodbye(v1::Goodbye::SUPERSEDED, "a newer stream for this node replaced this one");
  }
}

bool LinkService::Detach(const std::string& node, const Conn* conn) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(node);
  if (it == streams_.end()) return true;
  auto cur = it->second.lock();
  if (cur && cur.get() != conn) return false;
  streams_.erase(it);
  return true;
}

void LinkService::Disconnect(const std::string& node, v1::Goodbye::Reason reason,
                             const std::string& message) {
  std::shared_ptr<Conn> conn;
  {
    std::lock_guard lock(mu_);
    auto it = streams_.find(node);
    if (it == streams_.end()) return;
    conn = it->second.lock();
    streams_.erase(it);
  }
  if (conn) conn->SendGoodbye(reason, message);
}

void LinkService::DisconnectAll(v1::Goodbye::Reason reason, const std::string& message) {
  std::vector<std::shared_ptr<Conn>> conns;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, w] : streams_) {
      if (auto c = w.lock()) conns.push_back(std::move(c));
    }
    streams_.clear();
  }
  for (auto& c : conns) c->SendGoodbye(reason, message);
}

size_t LinkService::ActiveStreams() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

}  // namespace verge::cloud
