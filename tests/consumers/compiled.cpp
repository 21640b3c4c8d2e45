// The compiled part of a consumer built with FAILOVER_SEPARATE_COMPILATION.
#include <failover/compiled.hpp>
