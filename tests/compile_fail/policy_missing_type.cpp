// Must not compile: a bundle written from scratch, without the breaker and budget members that
// failover::default_policies provides.
#include <failover/failover.hpp>
struct my_policies {
  using classifier = failover::classifier;
  using backoff = failover::exponential_backoff<>;
  using clock = failover::steady_clock;
  using sleeper = failover::thread_sleeper;
  using hooks = failover::no_hooks;
};
int main() {
  failover::basic_retrier<my_policies> r("m");
  (void)r.run([] { return 1; });
  failover::basic_fallback_chain<int(), my_policies> chain;
  chain.add("a", [] { return 1; });
  (void)chain.run();
}
