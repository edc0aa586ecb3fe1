// Backend factories, private to host/.
#pragma once

#include <memory>

#include "recur/host/backend.h"

namespace recur {
std::unique_ptr<Backend> make_cpu_backend();
}  // namespace recur
