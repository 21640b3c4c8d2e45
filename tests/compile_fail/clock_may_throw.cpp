// Must not compile: a Clock whose now() may throw (a call could not end cleanly).
#include <chrono>
#include <failover/failover.hpp>
struct my_clock {
  failover::time_point now() const { return std::chrono::steady_clock::now(); }
  failover::wall_time wall_now() const noexcept { return std::chrono::system_clock::now(); }
};
struct my_policies : failover::default_policies {
  using clock = my_clock;
};
int main() {
  failover::basic_retrier<my_policies> r("m");
  (void)r.run([] { return 1; });
}
