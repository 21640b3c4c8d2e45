// Remedies: what the caller can change after a failed call, told from the final error and why the
// call ended, so a front end can say "allow more time" and not only what went wrong.
#pragma once

#include <cstdint>
#include <string_view>

#include "failover/core/decision.hpp"
#include "failover/core/error.hpp"
#include "failover/core/outcome.hpp"

namespace failover {

// A change to the chain's configuration that is known to help with a failure. Only failures whose
// cure is the configuration have one: a server error or a bad request has none.
enum class remedy : std::uint8_t {
  none,                      // no change of configuration is known to help
  add_context_window_entry,  // the input is too long, and no context-window entry took it
  add_content_policy_entry,  // refused on policy grounds, and no content-policy entry took it
  raise_deadline,            // the call's deadline ran out (or the next wait would cross it)
  check_credentials,         // the provider rejected the credentials (kind unauthorized: a 401, or
                             // a provider's code for a bad key such as Gemini's API_KEY_INVALID)
  raise_max_server_wait,     // the server asked for a wait above retry_options::max_server_wait
  raise_max_hops,            // a later entry would have taken over, but chain_options::max_hops
  raise_read_timeout,        // the last model read-timed out and no other entry could take over
};

// A neutral sentence for people, in the library's terms; "" for remedy::none, so a front end can
// print it whenever it is not empty. Front ends with their own flags map the enum instead.
constexpr std::string_view to_string(remedy r) noexcept {
  switch (r) {
    case remedy::none:
      return "";
    case remedy::add_context_window_entry:
      return "add an entry with a longer context window (role context_window)";
    case remedy::add_content_policy_entry:
      return "add a content-policy entry (role content_policy), if rerouting a refused request "
             "is acceptable";
    case remedy::raise_deadline:
      return "allow the call more time (chain_options::deadline)";
    case remedy::check_credentials:
      return "check the credentials: the provider rejected them";
    case remedy::raise_max_server_wait:
      return "allow longer server-requested waits (retry_options::max_server_wait)";
    case remedy::raise_max_hops:
      return "allow more models per call (chain_options::max_hops)";
    case remedy::raise_read_timeout:
      return "allow each attempt longer to answer (its read timeout)";
  }
  return "";
}

// Which routing roles the failed call could hand its failure to: whether it reached an entry of
// each role. An entry that was reached and failed as well is no remedy.
struct fallback_roles {
  bool context_window = false;
  bool content_policy = false;
};

// The remedy for a call that ended with error `e` for reason `why` (result::stop()). The reasons
// that end a call outright come first: a deadline, the hop limit and the server-wait cap are
// settings whatever the failure was; cancellation was the caller's own choice.
constexpr remedy remedy_for(const error& e, stop_reason why, fallback_roles reached) noexcept {
  if (why == stop_reason::succeeded || why == stop_reason::cancelled ||
      e.kind == error_kind::cancelled)
    return remedy::none;
  if (why == stop_reason::deadline || e.kind == error_kind::deadline_exceeded)
    return remedy::raise_deadline;
  if (why == stop_reason::hop_limit) return remedy::raise_max_hops;
  if (why == stop_reason::server_wait_too_long) return remedy::raise_max_server_wait;
  // A model that may still have been working when its read timeout fired, and nothing else could
  // answer: a longer timeout is the one setting that can help.
  if (why == stop_reason::read_timeouts_exhausted) return remedy::raise_read_timeout;
  switch (e.kind) {
    case error_kind::context_window:
      return reached.context_window ? remedy::none : remedy::add_context_window_entry;
    case error_kind::content_policy:
      return reached.content_policy ? remedy::none : remedy::add_content_policy_entry;
    case error_kind::unauthorized:
      return remedy::check_credentials;
    case error_kind::read_timeout:  // e.g. its attempts ran out on read timeouts
      return remedy::raise_read_timeout;
    default:
      return remedy::none;
  }
}

// The remedy for a finished call; remedy::none when it succeeded. The roles reached are read from
// the trace (a skipped entry counts: it was there, its circuit was open).
template <class T>
remedy remedy_for(const result<T>& r) noexcept {
  if (r.has_value()) return remedy::none;
  fallback_roles reached;
  for (const attempt_record& a : r.trace().attempts()) {
    reached.context_window = reached.context_window || a.role == role::context_window;
    reached.content_policy = reached.content_policy || a.role == role::content_policy;
  }
  return remedy_for(r.error(), r.stop(), reached);
}

}  // namespace failover
