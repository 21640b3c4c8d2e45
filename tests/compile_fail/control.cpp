// Compiles: the correct forms of every misuse in this folder.
#include <chrono>
#include <failover/failover.hpp>
#include <stdexcept>
#include <string>
struct my_backoff {
  failover::duration next(int) { return {}; }
};
struct my_policies : failover::default_policies {
  using backoff = my_backoff;
};
struct my_hooks : failover::no_hooks {  // derived: every hook it does not define is a no-op
  void on_retry(const failover::retry_scheduled&) const {}
};
struct hooked_policies : failover::default_policies {
  using hooks = my_hooks;
};
struct my_clock {  // now() is noexcept
  failover::time_point now() const noexcept { return std::chrono::steady_clock::now(); }
  failover::wall_time wall_now() const noexcept { return std::chrono::system_clock::now(); }
};
struct my_breaker : failover::no_breaker {  // admit() is noexcept
  failover::admission admit(handle, failover::time_point) const noexcept { return {}; }
};
struct my_budget : failover::no_budget {  // try_retry() is noexcept
  bool try_retry(failover::time_point) const noexcept { return true; }
};
struct gated_policies : failover::default_policies {
  using clock = my_clock;
  using breaker = my_breaker;
  using budget = my_budget;
};
struct callback_policies : failover::default_policies {
  using hooks = failover::callback_hooks;
};
struct scratch_policies {  // every member named, none inherited
  using classifier = failover::classifier;
  using backoff = failover::exponential_backoff<>;
  using clock = failover::steady_clock;
  using sleeper = failover::thread_sleeper;
  using hooks = failover::no_hooks;
  using breaker = failover::no_breaker;
  using budget = failover::no_budget;
};
int main() {
  failover::fallback_chain<std::string(const std::string&)> chain;
  chain.add("m", [](const std::string& s) { return s; });
  chain.add("n",
            [](const failover::attempt_context&,
               const std::string& s) -> failover::outcome<std::string> { return s; });
  failover::fallback_chain<std::string()> plain;
  plain.add("m", [] { return std::string(); });
  failover::retrier r("m");
  (void)r.run([] { return 1; });
  failover::basic_retrier<my_policies> custom("m");
  (void)custom;
  failover::basic_retrier<hooked_policies> hooked("m");
  (void)hooked;
  failover::basic_retrier<gated_policies> gated("m");
  (void)gated.run([] { return 1; });
  failover::basic_fallback_chain<std::string(const std::string&), callback_policies> observed;
  observed.hooks().retry = [](const failover::retry_scheduled&) {};
  failover::basic_retrier<scratch_policies> scratch("m");
  (void)scratch.run([] { return 1; });
  failover::classifier c;
  c.on_exception<std::runtime_error>(
      [](const std::runtime_error&) { return failover::failure::http(503); });
  failover::outcome<bool> done = true;
  (void)done;
}
