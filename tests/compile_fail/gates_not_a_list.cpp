// Policies::gates must be a failover::gate_list: a bare gate type is refused by name.
#include <failover/fallback_chain.hpp>

struct one_gate {};
struct bad_policies : failover::default_policies {
  using gates = one_gate;
};

int main() {
  failover::basic_fallback_chain<int(), bad_policies> chain;
  return static_cast<int>(chain.size());
}
