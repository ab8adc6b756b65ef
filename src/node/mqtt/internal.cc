#include "node/mqtt/internal.h"

#include <mosquitto.h>
#include <signal.h>

#include <mutex>

namespace verge::mqtt::internal {

void InitMosquittoLib() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

void BlockSigpipeInThisThread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace verge::mqtt::internal
