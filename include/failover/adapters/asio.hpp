// Asio completion tokens for chain calls: the Asio driver (drivers/asio.hpp), under the name the
// adapters' users look for. Needs standalone Asio (Debian: libasio-dev).
#pragma once

#include "failover/drivers/asio.hpp"
