// Helpers shared by broker.cc and subscriber.cc; not part of the library's interface.
// Thread-safety: both functions may be called from any thread.
#pragma once

namespace verge::mqtt::internal {

// mosquitto_lib_init, once per process (and never cleaned up: clients may live until exit).
void InitMosquittoLib();

// libmosquitto writes with write(2), so writing to a connection the peer closed raises SIGPIPE.
// Blocked in the calling thread, the signal stays pending there and the write fails with EPIPE.
void BlockSigpipeInThisThread();

}  // namespace verge::mqtt::internal
