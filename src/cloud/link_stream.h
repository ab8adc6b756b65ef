// LinkStream: the transport's side of one node stream, as the cloud's services see it. The
// LinkService reads from it through callbacks; the LinkService and the TelemetryWriter (acks
// after a commit) write to it. Thread-safety: Send and Close may be called from any thread.
#pragma once

#include <string>

namespace verge::cloud {

class LinkStream {
 public:
  virtual ~LinkStream() = default;
  // Queues a binary frame. Thread-safe; a no-op once the stream is closing or closed.
  virtual void Send(std::string frame) = 0;
  // Closes after the queued frames are written. Thread-safe, idempotent.
  virtual void Close() = 0;
};

}  // namespace verge::cloud
