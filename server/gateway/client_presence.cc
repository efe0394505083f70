#include "server/gateway/client_presence.h"

namespace anyai::server {
namespace {

thread_local const ScopedClientProbe* current = nullptr;

}  // namespace

ScopedClientProbe::ScopedClientProbe(Probe gone, const void* context)
    : gone_(gone), context_(context), outer_(current) {
  current = this;
}

ScopedClientProbe::~ScopedClientProbe() { current = outer_; }

bool ClientGone() { return current != nullptr && current->gone(); }

}  // namespace anyai::server
