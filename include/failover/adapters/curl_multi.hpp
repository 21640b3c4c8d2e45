// The async libcurl adapter: many transfers on one curl multi handle (one connection cache), driven
// by an Asio executor, each completing once with an `outcome<http::response>` through any token.
#pragma once

#include <curl/curl.h>
#include <poll.h>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/dispatch.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "failover/adapters/curl_common.hpp"
#include "failover/adapters/http.hpp"
#include "failover/clock.hpp"
#include "failover/context.hpp"
#include "failover/error.hpp"
#include "failover/outcome.hpp"

namespace failover::http {
namespace detail {

struct multi_core;

// What one async_post needs, taken from its arguments at the call (a deferred operation may start
// after the attempt's context is gone).
struct multi_request {
  std::string url;
  std::string body;
  curl_slist_ptr headers;
  curl_exchange plan;
  cancel_token token;
  std::optional<failure> refused;  // an unsafe header: nothing is sent
};

// One transfer, whatever its handler. Lives on the multi's executor; `self` keeps it alive while
// it is in the multi, so a completed transfer is freed before its handler runs.
struct multi_transfer {
  explicit multi_transfer(multi_request r) : req(std::move(r)) {}
  multi_transfer(const multi_transfer&) = delete;
  multi_transfer& operator=(const multi_transfer&) = delete;
  virtual ~multi_transfer() = default;
  virtual void complete(outcome<response> o) = 0;  // posts the handler; called once

  multi_request req;
  curl_state state;
  CURL* easy = nullptr;
  bool started = false;
  bool cancel_requested = false;  // a cancellation that came before the start
  std::optional<cancel_callback> on_cancel;
  std::shared_ptr<multi_transfer> self;
  multi_transfer* prev = nullptr;  // the multi's list of transfers in flight
  multi_transfer* next = nullptr;
};

inline failure multi_cancelled(const curl_exchange& plan) {
  curl_exchange x = plan;
  x.code = CURLE_ABORTED_BY_CALLBACK;
  x.cancelled = true;
  return curl_failure(x);
}

template <class Handler>
struct multi_transfer_of final : multi_transfer {
  using executor = asio::associated_executor_t<Handler, asio::any_io_executor>;
  multi_transfer_of(Handler h, const asio::any_io_executor& ex, multi_request r)
      : multi_transfer(std::move(r)),
        work(asio::make_work_guard(asio::get_associated_executor(h, ex))),
        slot(asio::get_associated_cancellation_slot(h)),
        handler(std::move(h)) {}

  void complete(outcome<response> o) override {
    on_cancel.reset();  // no abort for this transfer can be posted after this line
    if (slot.is_connected()) slot.clear();
    executor ex = work.get_executor();
    asio::post(
        ex, [h = std::move(handler), o = std::move(o)]() mutable { std::move(h)(std::move(o)); });
    work.reset();
  }

  asio::executor_work_guard<executor> work;  // the handler's executor does not run out of work
  asio::associated_cancellation_slot_t<Handler> slot;
  Handler handler;
};

// Runs on the multi's executor: the curl callbacks, every readiness wait and the timer.
struct multi_core : std::enable_shared_from_this<multi_core> {
  // A socket curl asks us to watch. The descriptor does not own curl's fd: it is released when
  // curl says CURL_POLL_REMOVE, which curl sends before it closes a socket it had us watch.
  struct watch {
    watch(const asio::any_io_executor& ex, curl_socket_t s) : d(ex, s), fd(s) {}
    asio::posix::stream_descriptor d;
    curl_socket_t fd;
    int want = 0;                      // CURL_POLL_IN / CURL_POLL_OUT bits
    bool waiting[2] = {false, false};  // a wait (read, write) is pending
    bool gone = false;
  };

  multi_core(asio::any_io_executor e, std::function<void(CURL*)> s)
      : ex(std::move(e)), timer(ex), multi(curl_multi_init()), setup(std::move(s)) {
    if (multi == nullptr)
      throw std::runtime_error("failover::http::curl_multi: curl_multi_init failed");
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
  }
  multi_core(const multi_core&) = delete;
  multi_core& operator=(const multi_core&) = delete;

  // Every transfer still in flight completes with `cancelled`; then the connections close.
  void shutdown() {
    while (multi_transfer* t = head) {
      unlink(*t);
      curl_multi_remove_handle(multi, t->easy);
      drop(std::exchange(t->easy, nullptr));
      finish(*t, multi_cancelled(t->req.plan));
    }
    for (CURL* easy : idle) curl_easy_cleanup(easy);
    idle.clear();
    curl_multi_cleanup(multi);  // may still call on_socket (REMOVE) and on_timer
    for (auto& w : watches) forget(*w.second);
    watches.clear();
    timer.cancel();
  }

  void start(const std::shared_ptr<multi_transfer>& t) {
    if (t->req.refused) return t->complete(std::move(*t->req.refused));
    if (t->cancel_requested || t->req.token.cancelled())
      return t->complete(multi_cancelled(t->req.plan));
    CURL* easy = take();
    if (easy == nullptr)
      return t->complete(
          failure::of(error_kind::unknown, "request could not be made (curl_easy_init failed)"));
    t->easy = easy;
    t->started = true;
    curl_arm(easy, t->state, t->req.url, t->req.body, t->req.headers.get(), t->req.plan);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, static_cast<void*>(t.get()));
    if (const CURLMcode mc = curl_multi_add_handle(multi, easy); mc != CURLM_OK) {
      t->easy = nullptr;
      static_cast<void>(curl_result(easy, CURLE_OK, t->state, t->req.plan));  // clears options
      give_back(easy);
      return t->complete(failure::of(
          error_kind::unknown,
          std::string("request could not be made (curl: ") + curl_multi_strerror(mc) + ")"));
    }
    t->self = t;
    link(*t);
    // The token's cancel() runs on its own thread: it only posts the abort here.
    t->on_cancel.emplace(t->req.token, [w = std::weak_ptr<multi_transfer>(t), c = weak_from_this(),
                                        e = ex]() noexcept {
      try {
        asio::post(e, [w, c] {
          if (auto core = c.lock())
            if (auto tt = w.lock()) core->abort(*tt);
        });
      } catch (...) {  // no memory to post: the transfer still ends at its own timeout
      }
    });
  }

  // Ends a transfer in flight: out of the multi (curl closes its connection, never reused
  // mid-transfer), the handle discarded, the handler told `cancelled`.
  void abort(multi_transfer& t) {
    if (!t.started) {
      t.cancel_requested = true;
      return;
    }
    if (!t.self) return;  // completed already
    unlink(t);
    curl_multi_remove_handle(multi, t.easy);
    drop(std::exchange(t.easy, nullptr));
    finish(t, multi_cancelled(t.req.plan));
  }

  void finish(multi_transfer& t, outcome<response> o) {
    const std::shared_ptr<multi_transfer> keep = std::move(t.self);
    t.complete(std::move(o));
  }

  // curl reported the transfer done with `rc`.
  void done(multi_transfer& t, CURLcode rc) {
    unlink(t);
    CURL* easy = std::exchange(t.easy, nullptr);
    curl_multi_remove_handle(multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, static_cast<void*>(nullptr));
    std::optional<outcome<response>> o;
    try {
      o.emplace(curl_result(easy, rc, t.state, t.req.plan));
      give_back(easy);
    } catch (const std::exception& e) {  // a callback ran out of memory: the handle is not kept
      drop(easy);
      o.emplace(failure::of(error_kind::unknown,
                            std::string("response could not be kept (") + e.what() + ")"));
    }
    finish(t, std::move(*o));
  }

  void act(curl_socket_t s, int events) {
    int running = 0;
    curl_multi_socket_action(multi, s, events, &running);
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      CURL* easy = m->easy_handle;
      const CURLcode rc = m->data.result;
      void* t = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &t);
      if (t != nullptr) done(*static_cast<multi_transfer*>(t), rc);
    }
  }

  // Waits until the socket is ready in direction `dir` (0 read, 1 write), then tells curl. Asio's
  // reactor is edge-triggered and curl may leave bytes unread, so readiness is polled first.
  void arm(const std::shared_ptr<watch>& w, int dir) {
    if (w->waiting[dir]) return;
    w->waiting[dir] = true;
    auto ready = [w, dir, c = weak_from_this()](const asio::error_code& ec) {
      w->waiting[dir] = false;
      const int bit = dir == 0 ? CURL_POLL_IN : CURL_POLL_OUT;
      auto core = c.lock();
      if (!core || w->gone || ec == asio::error::operation_aborted || (w->want & bit) == 0) return;
      core->act(w->fd, ec ? CURL_CSELECT_ERR : (dir == 0 ? CURL_CSELECT_IN : CURL_CSELECT_OUT));
      if (!w->gone && (w->want & bit) != 0) core->arm(w, dir);
    };
    pollfd p{w->fd, static_cast<short>(dir == 0 ? POLLIN : POLLOUT), 0};
    if (::poll(&p, 1, 0) > 0)
      asio::post(ex, [ready = std::move(ready)]() mutable { ready(asio::error_code()); });
    else
      w->d.async_wait(dir == 0 ? asio::posix::descriptor_base::wait_read
                               : asio::posix::descriptor_base::wait_write,
                      std::move(ready));
  }

  void forget(watch& w) {
    w.gone = true;
    w.want = 0;
    static_cast<void>(w.d.release());  // pending waits end with operation_aborted; fd stays open
  }

  static int on_socket(CURL*, curl_socket_t s, int what, void* self, void*) noexcept {
    auto* c = static_cast<multi_core*>(self);
    try {
      const auto it = c->watches.find(s);
      if (what == CURL_POLL_REMOVE) {
        if (it != c->watches.end()) {
          c->forget(*it->second);
          c->watches.erase(it);
        }
        return 0;
      }
      const std::shared_ptr<watch> w =
          it != c->watches.end()
              ? it->second
              : c->watches.emplace(s, std::make_shared<watch>(c->ex, s)).first->second;
      w->want = what;
      if ((what & CURL_POLL_IN) != 0) c->arm(w, 0);
      if ((what & CURL_POLL_OUT) != 0) c->arm(w, 1);
      return 0;
    } catch (...) {
      return -1;
    }
  }

  static int on_timer(CURLM*, long ms, void* self) noexcept {
    auto* c = static_cast<multi_core*>(self);
    try {
      if (ms < 0) {
        c->timer.cancel();
        return 0;
      }
      c->timer.expires_after(std::chrono::milliseconds(ms));
      c->timer.async_wait([w = c->weak_from_this()](const asio::error_code& ec) {
        if (ec) return;
        if (auto core = w.lock()) core->act(CURL_SOCKET_TIMEOUT, 0);
      });
      return 0;
    } catch (...) {
      return -1;
    }
  }

  CURL* take() {
    if (!idle.empty()) {
      CURL* easy = idle.back();
      idle.pop_back();
      return easy;
    }
    CURL* easy = curl_easy_init();
    if (easy == nullptr) return nullptr;
    if (setup) {
      try {
        setup(easy);
      } catch (...) {
        curl_easy_cleanup(easy);
        throw;
      }
    }
    ++made;
    return easy;
  }
  void give_back(CURL* easy) noexcept {
    try {
      idle.push_back(easy);
    } catch (...) {
      drop(easy);
    }
  }
  void drop(CURL* easy) noexcept {
    --made;
    curl_easy_cleanup(easy);
  }
  void link(multi_transfer& t) noexcept {
    t.next = head;
    if (head) head->prev = &t;
    head = &t;
    ++in_flight;
  }
  void unlink(multi_transfer& t) noexcept {
    (t.prev ? t.prev->next : head) = t.next;
    if (t.next) t.next->prev = t.prev;
    t.prev = t.next = nullptr;
    --in_flight;
  }

  asio::any_io_executor ex;
  asio::steady_timer timer;  // curl's one timeout (CURLMOPT_TIMERFUNCTION)
  CURLM* multi;
  std::function<void(CURL*)> setup;
  std::vector<CURL*> idle;
  std::unordered_map<curl_socket_t, std::shared_ptr<watch>> watches;
  multi_transfer* head = nullptr;
  std::size_t made = 0;
  std::size_t in_flight = 0;
};

// Starts one transfer for a handler: the initiation behind async_post.
struct multi_initiation {
  std::weak_ptr<multi_core> core;
  asio::any_io_executor ex;

  // An Asio cancellation (terminal, partial or total) aborts the transfer on the multi's executor.
  struct slot_abort {
    std::weak_ptr<multi_transfer> t;
    std::weak_ptr<multi_core> core;
    asio::any_io_executor ex;
    void operator()(asio::cancellation_type type) const {
      constexpr auto any = asio::cancellation_type::terminal | asio::cancellation_type::partial |
                           asio::cancellation_type::total;
      if ((type & any) == asio::cancellation_type::none) return;
      asio::post(ex, [t = t, core = core] {
        if (auto c = core.lock())
          if (auto tt = t.lock()) c->abort(*tt);
      });
    }
  };

  template <class Handler>
  void operator()(Handler&& h, multi_request r) const {
    using transfer = multi_transfer_of<std::decay_t<Handler>>;
    auto t = std::make_shared<transfer>(std::forward<Handler>(h), ex, std::move(r));
    if (t->slot.is_connected()) t->slot.template emplace<slot_abort>(slot_abort{t, core, ex});
    asio::dispatch(ex, [t = std::shared_ptr<multi_transfer>(std::move(t)), core = core] {
      if (auto c = core.lock())
        c->start(t);
      else  // the curl_multi is gone: nothing was sent
        t->complete(multi_cancelled(t->req.plan));
    });
  }
};

}  // namespace detail

// One curl multi handle on one Asio executor: a connection cache shared by every transfer, curl's
// timer as one steady_timer, socket readiness as async waits, and a pool of idle easy handles (it
// grows to the most transfers ever in flight at once). All of its work runs on its executor, which
// must be single-threaded (an io_context run by one thread) or a strand; async_post may be called
// from any thread. Destroy it on that executor's thread (or while nothing runs the executor), and
// before the executor's context: transfers still in flight then complete with `cancelled`.
// `setup` (optional) applies your own options (CA path, proxy) to every new easy handle; call
// curl_global_init once at start-up, as libcurl asks.
class curl_multi {
 public:
  using executor_type = asio::any_io_executor;

  explicit curl_multi(const executor_type& ex, std::function<void(CURL*)> setup = {})
      : core_(std::make_shared<detail::multi_core>(ex, std::move(setup))) {}
  explicit curl_multi(asio::io_context& io, std::function<void(CURL*)> setup = {})
      : curl_multi(executor_type(io.get_executor()), std::move(setup)) {}
  curl_multi(const curl_multi&) = delete;
  curl_multi& operator=(const curl_multi&) = delete;
  ~curl_multi() { core_->shutdown(); }

  // POSTs `body` to `url` as curl_post does (the attempt's timeouts, its cancel token, `bounds`,
  // the same failures) and completes `token` with `void(outcome<http::response>)`: never inside
  // this call, always on the handler's associated executor, exactly once. `ctx` is read now, so a
  // deferred operation keeps the timeouts of this moment. Cancelling the token or the handler's
  // cancellation slot aborts the transfer (its connection is closed) with `cancelled`.
  template <class Token>
  auto async_post(const attempt_context& ctx, std::string url, std::string body,
                  const std::vector<std::string>& headers, const timeouts& wanted,
                  const limits& bounds, std::string_view content_type, Token&& token) {
    bounds.validate();
    detail::multi_request r;
    r.refused = detail::curl_unsafe_header(headers);
    r.plan = detail::curl_plan(ctx, wanted, bounds);
    if (!r.refused) {
      r.url = std::move(url);
      r.body = std::move(body);
      r.headers = detail::curl_header_list(headers, content_type);
    }
    if (ctx.cancel != nullptr) r.token = *ctx.cancel;
    return asio::async_initiate<Token, void(outcome<response>)>(
        detail::multi_initiation{core_, core_->ex}, token, std::move(r));
  }

  executor_type get_executor() const noexcept { return core_->ex; }
  // The multi handle, for curl's own multi options (CURLMOPT_MAXCONNECTS: by default curl keeps
  // up to 4 idle connections per transfer in the multi, so a burst's connections close as it
  // ends). Not for CURLMOPT_SOCKET* or CURLMOPT_TIMER*, which this class owns.
  CURLM* native_handle() const noexcept { return core_->multi; }
  // Transfers in the multi now, and easy handles made so far (busy and idle).
  std::size_t in_flight() const noexcept { return core_->in_flight; }
  std::size_t handles() const noexcept { return core_->made; }

 private:
  std::shared_ptr<detail::multi_core> core_;
};

// A base URL on a curl_multi, with the timeouts and limits of a curl_endpoint, so code moves from
// `post` to `async_post` by adding a token. The curl_multi must outlive every call made.
class curl_multi_endpoint {
 public:
  curl_multi_endpoint(curl_multi& multi, std::string_view url, timeouts wanted = {},
                      limits bounds = {})
      : multi_(multi),
        url_(base_url::parse(url)),
        wanted_((wanted.validate(), wanted)),
        bounds_((bounds.validate(), bounds)) {}

  template <class Token>
  auto async_post(const attempt_context& ctx, std::string_view endpoint, std::string body,
                  const std::vector<std::string>& headers, std::string_view content_type,
                  Token&& token) {
    return multi_.async_post(ctx, url_.url(endpoint), std::move(body), headers, wanted_, bounds_,
                             content_type, std::forward<Token>(token));
  }
  template <class Token>
  auto async_post(const attempt_context& ctx, std::string_view endpoint, std::string body,
                  const std::vector<std::string>& headers, Token&& token) {
    return async_post(ctx, endpoint, std::move(body), headers, "application/json",
                      std::forward<Token>(token));
  }
  template <class Token>
  auto async_post(const attempt_context& ctx, std::string_view endpoint, std::string body,
                  Token&& token) {
    return async_post(ctx, endpoint, std::move(body), {}, "application/json",
                      std::forward<Token>(token));
  }

  curl_multi& multi() const noexcept { return multi_; }
  const base_url& url() const noexcept { return url_; }
  const timeouts& wanted_timeouts() const noexcept { return wanted_; }
  const limits& response_limits() const noexcept { return bounds_; }

 private:
  curl_multi& multi_;
  base_url url_;
  timeouts wanted_;
  limits bounds_;
};

}  // namespace failover::http
