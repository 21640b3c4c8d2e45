// Ends attempts a client library cannot end itself: one thread for the process watches the
// sockets of attempts in flight and shuts one down when its budget, token or header limit says so.
#pragma once

#ifndef _WIN32
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "failover/core/context.hpp"

namespace failover::http {

// Why the watchdog ended an attempt.
enum class watch_verdict : std::uint8_t { none, cancelled, over_budget, headers_over, body_over };

// One attempt under watch: filled in by the attempt, read by the watchdog under its lock. The
// attempt adds it before it sends and removes it before it returns, so every pointer stays good.
struct socket_watch {
  std::chrono::steady_clock::time_point expiry;  // the attempt's budget ends here
  const attempt_context* ctx = nullptr;          // for its cancel token
  std::uint64_t max_header_bytes = 0;            // 0: headers are not counted
  // 0: not counted. Else the most the whole response may read from the socket, framing and
  // all: after the headers, bytes the client keeps out of the body's sight (an endless
  // chunk-size line) are bounded only here.
  std::uint64_t max_response_bytes = 0;
  // Set by the attempt when the response headers are in (the header count stops there).
  bool headers_done = false;
  // Set by the watchdog, final once not none.
  watch_verdict verdict = watch_verdict::none;
  bool connected = false;  // when the verdict came: was the connection made?
  // errno of a dup of the attempt's socket that failed (too many open files): the socket was
  // shut down at once, since the watchdog could not end it later.
  int dup_error = 0;

  // Our own descriptors (dups) of the attempt's sockets: the one it opened, and a kept-alive one
  // it may reuse. A dup stays valid until we close it, so a shutdown can never reach a socket
  // that the client closed and the system handed to someone else.
  int fresh_fd = -1;
  int reused_fd = -1;
  std::uint64_t reused_baseline = 0;  // bytes the reused connection had read before this attempt
};

namespace detail {

// Bytes the client has read from the socket so far: what the kernel received less what still
// waits in its queue. -1 where the system does not tell (then headers are bounded only once
// parsed, see docs/adapters.md).
inline long long bytes_read_from(int fd) noexcept {
#if defined(__linux__)
  // tcpi_bytes_received (Linux 4.1+) sits at byte 128 of the kernel's tcp_info; glibc's copy of
  // the struct ends before it, and <linux/tcp.h> clashes with <netinet/tcp.h>.
  unsigned char info[232] = {};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, 11 /* TCP_INFO */, info, &len) != 0 || len < 136) return -1;
  std::uint64_t received = 0;
  std::memcpy(&received, info + 128, sizeof received);
  int queued = 0;
  if (::ioctl(fd, FIONREAD, &queued) != 0) return -1;
  return static_cast<long long>(received) - queued;
#else
  static_cast<void>(fd);
  return -1;
#endif
}

inline bool is_connected(int fd) noexcept {
#ifndef _WIN32
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  return fd >= 0 && ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0;
#else
  return fd >= 0;
#endif
}

inline int dup_socket(int fd) noexcept {
#ifndef _WIN32
  return fd < 0 ? -1 : ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
#else
  return -1;
#endif
}

inline void close_socket(int& fd) noexcept {
#ifndef _WIN32
  if (fd >= 0) ::close(fd);
#endif
  fd = -1;
}

inline void shut(int fd) noexcept {
#ifndef _WIN32
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);  // wakes the client's poll/recv/connect at once
#endif
}

}  // namespace detail

// Watches attempts: at its expiry, on its token, or when the server has sent more header (or
// response) bytes than allowed, an attempt's sockets are shut down, which ends whatever the
// client was waiting for (connecting, the status line, headers, a body byte). One thread,
// started with the first attempt and asleep while none is in flight; it wakes every `tick`
// while an attempt can be cancelled or has its bytes counted (a token cannot wake it), else at
// the next expiry.
class socket_watchdog {
 public:
  static constexpr std::chrono::milliseconds tick{5};
  // The header count includes what the client reads ahead and the TLS handshake; this much on
  // top of the limit tells an endless header from those (the exact check follows the parse).
  static constexpr std::uint64_t header_slack = std::uint64_t{64} << 10;

  socket_watchdog() = default;
  socket_watchdog(const socket_watchdog&) = delete;
  socket_watchdog& operator=(const socket_watchdog&) = delete;
  ~socket_watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Starts watching `w` (its expiry, ctx and header limit set, `reused_fd` already a dup). When
  // it throws (no thread, no memory), `w` is not watched, and the caller still owns its dups.
  void add(socket_watch& w) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // The thread first: were it to fail after the insert, the list would keep a pointer into
      // the caller's frame after the caller has gone.
      if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
      watches_.push_back(&w);
    }
    wake_.notify_all();
  }

  // The attempt opened a socket (the client's socket-options hook, before it connects): keeps a
  // dup of it; one opened earlier in the same attempt (another address) is let go.
  // When no dup can be made, the attempt fails closed: the client's socket is shut down before
  // it connects (nothing is sent) and `dup_error` says why.
  void opened(socket_watch& w, int client_fd) noexcept {
    int fd = detail::dup_socket(client_fd);
    const int error = fd < 0 ? errno : 0;
    std::lock_guard<std::mutex> lock(mutex_);
    if (fd < 0 && client_fd >= 0) {
      w.dup_error = error != 0 ? error : EBADF;
      detail::shut(client_fd);  // still the client's own socket: this runs inside its hook
      return;
    }
    std::swap(fd, w.fresh_fd);
    detail::close_socket(fd);
    if (w.verdict != watch_verdict::none) detail::shut(w.fresh_fd);
  }

  // The response headers are in: the count stops.
  void headers_done(socket_watch& w) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    w.headers_done = true;
  }

  // What remove() reports about the attempt's connection.
  struct summary {
    watch_verdict verdict = watch_verdict::none;
    bool connected = false;     // at the verdict (when there was one)
    int dup_error = 0;          // see socket_watch::dup_error
    long long bytes_read = -1;  // from this attempt's connection; -1 when unknown
  };

  // Stops watching `w` and closes its descriptors; the client keeps its own.
  summary remove(socket_watch& w) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    watches_.erase(std::remove(watches_.begin(), watches_.end(), &w), watches_.end());
    summary s;
    s.verdict = w.verdict;
    s.connected = w.connected;
    s.dup_error = w.dup_error;
    s.bytes_read = read_so_far(w);
    detail::close_socket(w.fresh_fd);
    detail::close_socket(w.reused_fd);
    return s;
  }

 private:
  // Bytes read in this attempt, from the connection it uses (a fresh one if it opened one).
  static long long read_so_far(const socket_watch& w) noexcept {
    if (w.fresh_fd >= 0) return detail::bytes_read_from(w.fresh_fd);
    if (w.reused_fd < 0) return -1;
    const long long n = detail::bytes_read_from(w.reused_fd);
    return n < 0 ? -1 : n - static_cast<long long>(w.reused_baseline);
  }

  void check(socket_watch& w, std::chrono::steady_clock::time_point now) noexcept {
    if (w.verdict == watch_verdict::none) {
      if (w.ctx != nullptr && w.ctx->cancelled()) {
        w.verdict = watch_verdict::cancelled;
      } else if (now >= w.expiry) {
        w.verdict = watch_verdict::over_budget;
      } else if (w.max_header_bytes > 0 && !w.headers_done) {
        const long long n = read_so_far(w);
        if (n > 0 && static_cast<std::uint64_t>(n) > w.max_header_bytes + header_slack)
          w.verdict = watch_verdict::headers_over;
      } else if (w.max_response_bytes > 0 && w.headers_done) {
        const long long n = read_so_far(w);
        if (n > 0 && static_cast<std::uint64_t>(n) > w.max_response_bytes)
          w.verdict = watch_verdict::body_over;
      }
      if (w.verdict != watch_verdict::none)
        w.connected = detail::is_connected(w.fresh_fd >= 0 ? w.fresh_fd : w.reused_fd);
    }
    // Again on every tick: a socket may have been opened, or not yet connected, since the last.
    if (w.verdict != watch_verdict::none) {
      detail::shut(w.fresh_fd);
      detail::shut(w.reused_fd);
    }
  }

  static bool needs_ticks(const socket_watch& w) noexcept {
    return w.verdict != watch_verdict::none ||
           (w.ctx != nullptr && w.ctx->cancel != nullptr && w.ctx->cancel->can_be_cancelled()) ||
           (w.max_header_bytes > 0 && !w.headers_done) || w.max_response_bytes > 0;
  }

  void run() {
    using clock = std::chrono::steady_clock;
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      if (watches_.empty()) {
        wake_.wait(lock);
        continue;
      }
      const clock::time_point now = clock::now();
      clock::time_point next = clock::time_point::max();
      for (socket_watch* w : watches_) {
        check(*w, now);
        if (needs_ticks(*w))
          next = std::min(next, now + tick);
        else
          next = std::min(next, w->expiry);
      }
      wake_.wait_until(lock, next);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<socket_watch*> watches_;
  bool stopping_ = false;
  std::thread thread_;
};

namespace detail {

inline long process_id() noexcept {
#ifndef _WIN32
  return static_cast<long>(::getpid());
#else
  return 0;
#endif
}

// The shared watchdog of one process. Never destroyed: an attempt on another thread, or in an
// atexit handler, may still use it while the process exits, and joining its thread there would
// wait for nothing useful. A forked child makes its own (the parent's thread does not exist in
// the child, and its mutex may have been held at the fork); the parent's copy is kept reachable
// through `before` and never touched.
struct shared_watchdog {
  shared_watchdog(shared_watchdog* parents, long pid) : before(parents), owner(pid) {}
  shared_watchdog* before;
  long owner;
  socket_watchdog watchdog;
};

}  // namespace detail

// The watchdog the adapters share: one thread for the whole process (a forked child gets its
// own), started when needed, left running at exit.
inline socket_watchdog& shared_socket_watchdog() {
  // Constant-initialized: no guard that a fork could leave locked.
  static std::atomic<detail::shared_watchdog*> current{nullptr};
  const long self = detail::process_id();
  detail::shared_watchdog* seen = current.load(std::memory_order_acquire);
  while (seen == nullptr || seen->owner != self) {
    auto* fresh = new detail::shared_watchdog(seen, self);  // leaked on purpose, see above
    if (current.compare_exchange_strong(seen, fresh, std::memory_order_acq_rel,
                                        std::memory_order_acquire))
      return fresh->watchdog;
    delete fresh;  // never used (no thread); another thread was first and `seen` is its one
  }
  return seen->watchdog;
}

}  // namespace failover::http
