// The libcurl adapter: performs one request on a curl easy handle under the attempt's timeouts
// and turns what came back into an `outcome<http::response>`, naming each transport failure.
#pragma once

#include <curl/curl.h>

#include <cstddef>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "failover/adapters/curl_common.hpp"
#include "failover/adapters/http.hpp"
#include "failover/core/context.hpp"
#include "failover/core/error.hpp"
#include "failover/core/outcome.hpp"

namespace failover::http {

// POSTs `body` to `url` on `easy` (a handle you keep, so connections are reused): the connect
// timeout and the whole transfer's limit come from this attempt, never past the call's deadline,
// cancellation is honoured during the transfer, and the response is held to `bounds`. `headers`
// are "Name: value" lines. Afterwards the handle holds no pointer into this call: the headers,
// the body and the callbacks are cleared (to libcurl's defaults, not to options you had set) and
// the method is GET again; the URL, the timeouts and NOSIGNAL stay as this call set them. An
// exception in a callback (no memory for the body) aborts the transfer and is rethrown once the
// options are cleared; it never passes through libcurl. One handle serves one transfer at a time:
// to share across threads, use curl_endpoint below.
inline outcome<response> curl_post(CURL* easy, const attempt_context& ctx, const std::string& url,
                                   const std::string& body,
                                   const std::vector<std::string>& headers = {},
                                   const timeouts& wanted = {},
                                   std::string_view content_type = "application/json",
                                   const limits& bounds = {}) {
  if (easy == nullptr) throw std::invalid_argument("failover::http::curl_post: easy is null");
  bounds.validate();
  if (auto unsafe = detail::curl_unsafe_header(headers)) return std::move(*unsafe);
  const curl_exchange x = detail::curl_plan(ctx, wanted, bounds);
  const detail::curl_slist_ptr list = detail::curl_header_list(headers, content_type);
  detail::curl_state state;
  state.cancel = ctx.cancel;
  detail::curl_arm(easy, state, url, body, list.get(), x);
  const CURLcode rc = curl_easy_perform(easy);
  return detail::curl_result(easy, rc, state, x);
}

// A base URL with a pool of easy handles, safe to share between threads: each attempt takes a
// handle of its own (the one used last, whose connection is the likeliest to be open; a new one
// when all are busy) and gives it back afterwards, so no two transfers ever touch one handle and
// connections are reused across attempts. The pool grows to the most attempts ever in flight at
// once; a handle whose attempt threw is cleaned up, not kept. `setup` (optional) applies your own
// options (CA path, proxy) to every new handle; call curl_global_init once at start-up, as libcurl
// asks.
class curl_endpoint {
 public:
  explicit curl_endpoint(std::string_view url, timeouts wanted = {}, limits bounds = {},
                         std::function<void(CURL*)> setup = {})
      : url_(base_url::parse(url)),
        wanted_((wanted.validate(), wanted)),
        bounds_((bounds.validate(), bounds)),
        setup_(std::move(setup)) {}
  curl_endpoint(const curl_endpoint&) = delete;
  curl_endpoint& operator=(const curl_endpoint&) = delete;
  ~curl_endpoint() {
    for (CURL* easy : idle_) curl_easy_cleanup(easy);
  }

  outcome<response> post(const attempt_context& ctx, std::string_view endpoint,
                         const std::string& body, const std::vector<std::string>& headers = {},
                         std::string_view content_type = "application/json") {
    lease easy(*this);
    if (easy.get() == nullptr)
      return failure::of(error_kind::unknown, "request could not be made (curl_easy_init failed)");
    try {
      return curl_post(easy.get(), ctx, url_.url(endpoint), body, headers, wanted_, content_type,
                       bounds_);
    } catch (...) {
      easy.discard();  // a transfer cut short by an exception: no later attempt gets this handle
      throw;
    }
  }

  // Handles made so far (busy and idle): at most the number of attempts ever in flight at once.
  std::size_t handles() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return made_;
  }
  const base_url& url() const noexcept { return url_; }
  const timeouts& wanted_timeouts() const noexcept { return wanted_; }
  const limits& response_limits() const noexcept { return bounds_; }

 private:
  // One handle checked out for one attempt; back to the pool when the attempt is over.
  class lease {
   public:
    explicit lease(curl_endpoint& e) : e_(e), easy_(e.take()) {}
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease() {
      if (easy_ == nullptr) return;
      if (discarded_)
        e_.drop(easy_);
      else
        e_.give_back(easy_);
    }
    CURL* get() const noexcept { return easy_; }
    void discard() noexcept { discarded_ = true; }

   private:
    curl_endpoint& e_;
    CURL* easy_;
    bool discarded_ = false;
  };

  CURL* take() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!idle_.empty()) {
        CURL* easy = idle_.back();
        idle_.pop_back();
        return easy;
      }
    }
    CURL* easy = curl_easy_init();  // outside the lock: other attempts need not wait for it
    if (easy == nullptr) return nullptr;
    if (setup_) {
      try {
        setup_(easy);
      } catch (...) {
        curl_easy_cleanup(easy);
        throw;
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ++made_;
    return easy;
  }

  void drop(CURL* easy) noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --made_;
    }
    curl_easy_cleanup(easy);
  }

  void give_back(CURL* easy) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      idle_.push_back(easy);
    } catch (...) {
      --made_;
      curl_easy_cleanup(easy);  // no room to keep it: a later attempt makes a new one
    }
  }

  base_url url_;
  timeouts wanted_;
  limits bounds_;
  std::function<void(CURL*)> setup_;
  mutable std::mutex mutex_;
  std::vector<CURL*> idle_;
  std::size_t made_ = 0;
};

}  // namespace failover::http
