// The async libcurl adapter: many transfers on one curl multi handle (one connection cache), driven
// by an Asio executor, each completing once with an `outcome<http::response>` through any token.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/dispatch.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "failover/adapters/curl_common.hpp"
#include "failover/adapters/curl_multi_core.hpp"
#include "failover/adapters/http.hpp"
#include "failover/core/context.hpp"
#include "failover/core/outcome.hpp"

namespace failover::http {
namespace detail {

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
  ~curl_multi() {
    try {
      core_->shutdown();
    } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory while posting the last
    }                // completions: the transfers' handlers are then dropped, never run twice
  }

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
