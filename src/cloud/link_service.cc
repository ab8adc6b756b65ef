#include "cloud/link_service.h"

#include <spdlog/spdlog.h>

#include "cloud/api_json.h"

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
      default:
        // A message kind from a newer node: ignore it, as the compatibility rule says.
        ++svc_.counters_.unknown_messages;
        break;
    }
  }

  void OnClosed(const std::string& reason) override {
    if (hello_done_) {
      svc_.Detach(peer_.common_name, this);
      svc_.registry_.OnDisconnected(peer_.common_name, !goodbye_.empty() ? goodbye_
                                                       : reason.empty()  ? "link closed"
                                                                         : reason);
    }
  }

  void SendGoodbye(v1::Goodbye::Reason reason, const std::string& message) {
    stream_->Send(GoodbyeFrame(reason, message));
    stream_->Close();
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

    v1::Envelope reply;
    reply.set_in_reply_to(env.id());
    auto* ack = reply.mutable_hello_ack();
    ack->set_protocol_version(std::min(h.protocol_version(), kProtocolVersion));
    ack->set_cloud_time_ms(svc_.clock_.WallMs());
    // Desired state and uplink arrive in later protocol versions; until then both are 0.
    ack->set_desired_version(0);
    ack->set_uplink_stored_seq(0);
    stream_->Send(reply.SerializeAsString());
    spdlog::info("node {} connected from {} (agent {})", peer_.common_name, peer_.remote_ip,
                 h.agent_version());
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
};

LinkService::LinkService(Registry& registry, const Clock& clock)
    : registry_(registry), clock_(clock) {}

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

void LinkService::Detach(const std::string& node, const Conn* conn) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(node);
  if (it == streams_.end()) return;
  auto cur = it->second.lock();
  if (!cur || cur.get() == conn) streams_.erase(it);
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
