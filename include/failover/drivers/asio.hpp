// The Asio driver: async_run(chain, executor, args..., token) with any Asio completion token (a
// callback, use_future, deferred, use_awaitable), written once as the callback driver on the
// executor, with its waits on a steady_timer and cancellation through the token's slot.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "failover/drivers/callback.hpp"

namespace failover {
namespace detail {

template <class, class = void>
struct is_asio_executor_like : std::false_type {};
template <class E>
struct is_asio_executor_like<
    E, std::enable_if_t<::asio::is_executor<E>::value || ::asio::execution::is_executor<E>::value>>
    : std::true_type {};

template <class, class = void>
struct has_running_in_this_thread : std::false_type {};
template <class E>
struct has_running_in_this_thread<
    E, std::void_t<decltype(bool(std::declval<const E&>().running_in_this_thread()))>>
    : std::true_type {};

// The calls pending on one execution context (an io_context, say), as an Asio service: when the
// context shuts down (its destructor, or shutdown()), every call still pending is let go, its
// handler destroyed without being called, as Asio destroys the handlers of its own pending
// operations. Without it a pending call, which owns itself until it ends, would outlive its
// context. A call enrols through its loop, and leaves when the loop is destroyed.
class asio_call_registry : public ::asio::execution_context::service {
 public:
  static inline ::asio::execution_context::id id;

  struct node {
    node* prev = nullptr;
    node* next = nullptr;
    bool linked = false;
    std::weak_ptr<void> call;
    void (*abandon)(void*) = nullptr;
  };

  explicit asio_call_registry(::asio::execution_context& ctx) : service(ctx) {}

  void enrol(node& n, std::weak_ptr<void> call, void (*abandon)(void*)) {
    std::lock_guard<std::mutex> lock(mutex_);
    n.call = std::move(call);
    n.abandon = abandon;
    n.prev = nullptr;
    n.next = head_;
    if (head_ != nullptr) head_->prev = &n;
    head_ = &n;
    n.linked = true;
  }

  void leave(node& n) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!n.linked) return;
    if (n.prev != nullptr)
      n.prev->next = n.next;
    else
      head_ = n.next;
    if (n.next != nullptr) n.next->prev = n.prev;
    n.linked = false;
  }

 private:
  void shutdown() override {
    std::vector<std::pair<std::shared_ptr<void>, void (*)(void*)>> pending;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (node* n = head_; n != nullptr;) {
        node* next = n->next;
        if (auto call = n->call.lock()) pending.emplace_back(std::move(call), n->abandon);
        n->linked = false;
        n = next;
      }
      head_ = nullptr;
    }
    for (auto& p : pending) p.second(p.first.get());
    pending.clear();  // the calls (and their loops, which leave unlinked) are destroyed here
  }

  std::mutex mutex_;
  node* head_ = nullptr;
};

template <class Executor>
::asio::execution_context& context_of(const Executor& ex) {
  if constexpr (::asio::execution::is_executor<Executor>::value)
    return ::asio::query(ex, ::asio::execution::context);
  else
    return ex.context();
}

// The callback driver's loop on an Asio executor: post() is asio::post, at() is one steady_timer
// per call. Its executor must run one thread at a time (an io_context run by one thread, or a
// strand), as the call's events must not run concurrently.
template <class Executor, class Timer>
class asio_loop {
 public:
  // Its context's shutdown lets go of the calls on it (asio_call_registry), so the callback
  // driver's closures need not watch for being destroyed unrun.
  using frees_pending_calls = std::true_type;
  // at() resets the call's one steady_timer, which is not safe to touch from another thread.
  using one_timer_per_call = std::true_type;

  explicit asio_loop(const Executor& ex)
      : ex_(ex), timer_(ex), registry_(::asio::use_service<asio_call_registry>(context_of(ex))) {}
  asio_loop(const asio_loop&) = delete;
  asio_loop& operator=(const asio_loop&) = delete;
  ~asio_loop() { registry_.leave(node_); }

  // Lets the context's shutdown let go of `call` (an async_call that runs on this loop).
  template <class Call>
  void enrol(const std::shared_ptr<Call>& call) {
    registry_.enrol(node_, call, [](void* c) { static_cast<Call*>(c)->abandon(); });
  }

  void post(std::function<void()> f) { ::asio::post(ex_, std::move(f)); }
  // Known for an io_context's executor and a strand; other executors (any_io_executor) say no.
  bool running_in_this_thread() const noexcept {
    if constexpr (has_running_in_this_thread<Executor>::value)
      return ex_.running_in_this_thread();
    else
      return false;
  }
  void at(time_point t, std::function<void()> f) {
    timer_.expires_at(t);  // cancels the earlier wait, whose handler then does nothing
    timer_.async_wait([f = std::move(f)](const std::error_code& ec) {
      if (!ec) f();
    });
  }

 private:
  Executor ex_;
  Timer timer_;
  asio_call_registry& registry_;
  asio_call_registry::node node_;
};

// Runs synchronous entries on an Asio executor (an asio::thread_pool's, say) instead of inline on
// the call's executor, so that a blocking entry does not hold the I/O thread.
template <class Executor>
class asio_pool {
 public:
  explicit asio_pool(const Executor& ex) : ex_(ex) {}
  void submit(std::function<void()> f) const { ::asio::post(ex_, std::move(f)); }

 private:
  Executor ex_;
};

// What a call owns beside its state: its loop (and timer), and where its synchronous entries run.
template <class Loop, class Pool>
struct asio_call_home {
  template <class Executor, class PoolExecutor>
  asio_call_home(const Executor& ex, const PoolExecutor& pool_ex) : loop(ex), pool(pool_ex) {}
  Loop loop;
  Pool pool;
};

// The completion the callback driver calls: clears the cancellation slot, then hands the result
// to the user's handler on the handler's own executor. The call's loop (and its timer) is owned
// by the call itself, not by this: an attempt's completion on another thread may still post
// through the loop after this has run.
template <class Handler, class Executor, class R>
struct asio_completion {
  Handler handler;
  ::asio::executor_work_guard<::asio::associated_executor_t<Handler, Executor>> work;

  void operator()(result<R> r) {
    auto slot = ::asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.clear();
    auto ex = work.get_executor();
    auto guard = std::move(work);
    ::asio::dispatch(ex, [h = std::move(handler), r = std::move(r)]() mutable { h(std::move(r)); });
  }
};

// `PoolExecutor` void: synchronous entries run inline on `ex`.
template <class Chain, class Executor, class Timer, class PoolExecutor = void>
struct asio_initiation {
  const Chain* chain;
  Executor ex;
  call_options call;
  std::conditional_t<std::is_void_v<PoolExecutor>, char, PoolExecutor> pool_ex{};

  template <class Handler, class... Args>
  void operator()(Handler&& handler, Args&&... args) const {
    using value = typename Chain::value_type;
    using completion_type = asio_completion<std::decay_t<Handler>, Executor, value>;
    auto slot = ::asio::get_associated_cancellation_slot(handler);
    auto work = ::asio::make_work_guard(::asio::get_associated_executor(handler, ex));
    completion_type done{std::forward<Handler>(handler), std::move(work)};
    auto state = [&] {
      if constexpr (std::is_void_v<PoolExecutor>) {
        auto loop = std::make_shared<asio_loop<Executor, Timer>>(ex);
        static inline_pool inline_runner;
        auto& loop_ref = *loop;
        auto s = launch_call(*chain, loop_ref, inline_runner, call,
                             std::forward_as_tuple(std::forward<Args>(args)..., std::move(done)),
                             std::index_sequence_for<Args...>{}, std::move(loop));
        loop_ref.enrol(s);
        return s;
      } else {
        using home = asio_call_home<asio_loop<Executor, Timer>, asio_pool<PoolExecutor>>;
        auto h = std::make_shared<home>(ex, pool_ex);
        auto& loop_ref = h->loop;
        auto& pool_ref = h->pool;
        auto s = launch_call(*chain, loop_ref, pool_ref, call,
                             std::forward_as_tuple(std::forward<Args>(args)..., std::move(done)),
                             std::index_sequence_for<Args...>{}, std::move(h));
        loop_ref.enrol(s);
        return s;
      }
    }();
    if (slot.is_connected()) {
      std::weak_ptr<typename decltype(state)::element_type> weak = state;
      slot.assign([weak](::asio::cancellation_type type) {
        // Terminal and partial cancellation end the call (its attempt and HTTP transfer are
        // aborted); total cancellation cannot be honoured (an attempt may have had effects).
        if ((type & (::asio::cancellation_type::terminal | ::asio::cancellation_type::partial)) ==
            ::asio::cancellation_type::none)
          return;
        if (auto s = weak.lock()) s->cancel();
      });
    }
  }
};

template <class Timer, class PoolExecutor = void, class Chain, class Executor, class Tuple,
          class PoolArg = char, std::size_t... I>
auto asio_run(const Chain& chain, const Executor& ex, const call_options& call, Tuple&& t,
              std::index_sequence<I...>, const PoolArg& pool = {}) {
  using value = typename Chain::value_type;
  constexpr std::size_t last = sizeof...(I);
  auto& token = std::get<last>(t);
  return ::asio::async_initiate<std::remove_reference_t<decltype(token)>, void(result<value>)>(
      asio_initiation<Chain, Executor, Timer, PoolExecutor>{&chain, ex, call, pool}, token,
      std::decay_t<std::tuple_element_t<I, std::decay_t<Tuple>>>(std::get<I>(t))...);
}

}  // namespace detail

// One call of `chain` on `ex` (an executor, or an io_context): async_run(chain, ex, args...,
// token) completes with `result<R>` through the token. The arguments are copied into the call.
// Waits are steady_timers on `ex`; the token's cancellation slot (terminal or partial) ends the
// call with error_kind::cancelled and cancels the attempt in flight (its context's token), which
// aborts a curl_multi transfer. Synchronous entries run inline on `ex` (async_run_on below puts
// them on a thread pool). The chain must use
// failover::steady_clock (the timers' clock) and outlive the call.
template <class Chain, class Executor, class... ArgsAndToken,
          std::enable_if_t<detail::is_asio_executor_like<Executor>::value, int> = 0>
auto async_run(const Chain& chain, const Executor& ex, ArgsAndToken&&... args_and_token) {
  static_assert(sizeof...(ArgsAndToken) >= 1,
                "failover::async_run(chain, executor, args..., token): the last argument must be "
                "an Asio completion token");
  return detail::asio_run<::asio::steady_timer>(
      chain, ex, detail::no_call_options,
      std::forward_as_tuple(std::forward<ArgsAndToken>(args_and_token)...),
      std::make_index_sequence<sizeof...(ArgsAndToken) - 1>{});
}

template <class Chain, class... ArgsAndToken>
auto async_run(const Chain& chain, ::asio::io_context& io, ArgsAndToken&&... args_and_token) {
  return async_run(chain, io.get_executor(), std::forward<ArgsAndToken>(args_and_token)...);
}

// The same with per-call options (a deadline, a cancel token). `Timer` is the waitable timer the
// waits use: steady_timer, or in tests a basic_waitable_timer on a clock that reads the chain's
// fake time (tests/integration/asio_driver_test.cpp).
template <class Timer = ::asio::steady_timer, class Chain, class Executor, class... ArgsAndToken,
          std::enable_if_t<detail::is_asio_executor_like<Executor>::value, int> = 0>
auto async_run_with(const Chain& chain, const Executor& ex, const call_options& call,
                    ArgsAndToken&&... args_and_token) {
  return detail::asio_run<Timer>(
      chain, ex, call, std::forward_as_tuple(std::forward<ArgsAndToken>(args_and_token)...),
      std::make_index_sequence<sizeof...(ArgsAndToken) - 1>{});
}

// The same, with the synchronous entries run on `pool` (an Asio executor, such as an
// asio::thread_pool's, or the thread_pool itself) instead of inline on `ex`: a blocking entry (a
// blocking HTTP client) then holds a pool thread, not the I/O thread. Its answer is handed back
// to the call on `ex`. The pool must outlive the call.
template <class Timer = ::asio::steady_timer, class Chain, class Executor, class PoolExecutor,
          class... ArgsAndToken,
          std::enable_if_t<detail::is_asio_executor_like<Executor>::value &&
                               detail::is_asio_executor_like<PoolExecutor>::value,
                           int> = 0>
auto async_run_on(const Chain& chain, const Executor& ex, const PoolExecutor& pool,
                  const call_options& call, ArgsAndToken&&... args_and_token) {
  static_assert(sizeof...(ArgsAndToken) >= 1,
                "failover::async_run_on(chain, executor, pool, call, args..., token): the last "
                "argument must be an Asio completion token");
  return detail::asio_run<Timer, PoolExecutor>(
      chain, ex, call, std::forward_as_tuple(std::forward<ArgsAndToken>(args_and_token)...),
      std::make_index_sequence<sizeof...(ArgsAndToken) - 1>{}, pool);
}

template <class Timer = ::asio::steady_timer, class Chain, class Executor, class... ArgsAndToken,
          std::enable_if_t<detail::is_asio_executor_like<Executor>::value, int> = 0>
auto async_run_on(const Chain& chain, const Executor& ex, ::asio::thread_pool& pool,
                  const call_options& call, ArgsAndToken&&... args_and_token) {
  return async_run_on<Timer>(chain, ex, pool.get_executor(), call,
                             std::forward<ArgsAndToken>(args_and_token)...);
}

template <class Chain, class PoolArg, class... ArgsAndToken>
auto async_run_on(const Chain& chain, ::asio::io_context& io, PoolArg&& pool,
                  const call_options& call, ArgsAndToken&&... args_and_token) {
  return async_run_on(chain, io.get_executor(), std::forward<PoolArg>(pool), call,
                      std::forward<ArgsAndToken>(args_and_token)...);
}

#if defined(ASIO_HAS_CO_AWAIT)
// An entry written as a coroutine (C++20): `f(ctx, args...)` returns
// asio::awaitable<outcome<R>>, and runs on `ex` through co_spawn. What it throws is classified as
// what a synchronous callable throws; the attempt's cancellation (cancel_attempt, or the call's)
// reaches the coroutine as a terminal cancellation of the operation it awaits. The coroutine may
// outlive its call (it is cancelled, not waited for): take the arguments by value.
//   chain.add("m", failover::awaitable_entry<std::string(const std::string&)>(ex, coroutine));
template <class Signature, class Executor, class F>
class awaitable_entry;

template <class R, class... Args, class Executor, class F>
class awaitable_entry<R(Args...), Executor, F> {
 public:
  awaitable_entry(const Executor& ex, F f) : ex_(ex), f_(std::move(f)) {}
  void operator()(const attempt_context& ctx, std::add_lvalue_reference_t<Args>... args,
                  completion<R> done) {
    auto signal = std::make_shared<::asio::cancellation_signal>();
    std::shared_ptr<cancel_callback> watch;
    if (ctx.cancel) {
      Executor ex = ex_;
      watch = std::make_shared<cancel_callback>(*ctx.cancel, [signal, ex]() noexcept {
        try {
          ::asio::post(ex, [signal] { signal->emit(::asio::cancellation_type::terminal); });
        } catch (
            ...) {  // NOLINT(bugprone-empty-catch): the executor takes no work: nothing to cancel
        }
      });
    }
    ::asio::co_spawn(ex_, deliver(f_(ctx, args...), std::move(done)),
                     ::asio::bind_cancellation_slot(signal->slot(),
                                                    [watch, signal](const std::exception_ptr&) {}));
  }

 private:
  // Awaits the entry's coroutine and hands its answer, or what it threw, to the completion.
  static ::asio::awaitable<void> deliver(::asio::awaitable<outcome<R>> entry, completion<R> done) {
    std::exception_ptr thrown;
    try {
      outcome<R> answer = co_await std::move(entry);
      done(std::move(answer));
    } catch (...) {
      thrown = std::current_exception();
    }
    if (thrown) done.fail(std::move(thrown));
  }

  Executor ex_;
  F f_;
};

template <class Signature, class Executor, class F>
auto make_awaitable_entry(const Executor& ex, F f) {
  return awaitable_entry<Signature, Executor, F>(ex, std::move(f));
}
#endif

}  // namespace failover
