// The machinery under curl_multi: transfers in flight on one curl multi handle, the socket and
// timer callbacks that run them on an Asio executor, and the easy-handle pool. Not for direct use.
#pragma once

#include <curl/curl.h>
#include <poll.h>

#include <algorithm>
#include <asio/any_io_executor.hpp>
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
#include "failover/core/clock.hpp"
#include "failover/core/context.hpp"
#include "failover/core/error.hpp"
#include "failover/core/outcome.hpp"

namespace failover::http::detail {

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
    CURL* easy = nullptr;
    try {
      easy = take();
    } catch (...) {  // the user's setup threw: this handler still completes, once
      return t->complete(failure::of(error_kind::unknown,
                                     "request could not be made (the easy handle's setup threw)"));
    }
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
    // Room for every handle made to come back idle, taken here as the transfer starts, so that
    // give_back() does not grow the vector while an answer is handed over.
    try {
      if (idle.capacity() < made + 1) idle.reserve(std::max<std::size_t>(2 * idle.capacity(), 16));
    } catch (...) {  // NOLINT(bugprone-empty-catch): give_back() then drops a handle it cannot keep
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

}  // namespace failover::http::detail
