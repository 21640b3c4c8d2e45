// Moved to failover/core/error.hpp in 0.2.0. This header forwards there, so that code written
// against 0.1 keeps compiling; new code includes the new path.
#pragma once

#include "failover/core/error.hpp"
