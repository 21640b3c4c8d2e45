// failover-chat's settings: flags and the JSON config file share one table, so a flag and its key
// always mean the same thing, and every error names the flag or the JSON path that is wrong.
#pragma once

#include <failover/core/backoff.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace chat {

// Bad usage or a bad config file: exit code 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Where one model is served, from the config file's model_list.
struct route {
  std::string upstream;        // the model name sent to the provider ("" = the entry's name)
  std::string base_url;        // "" = the global base URL
  std::string api_key_env;     // "" = the global key variable
  std::string where;           // "FILE: $.model_list[i]", for errors found once the flags are in
  std::string base_url_where;  // "FILE: $.model_list[i].base_url"
};

// The most models a chain takes here, per list and in all: far above any routing list (a call
// tries --max-hops of them), and low enough that a file of tens of thousands of names is refused
// before a chain is built from it.
inline constexpr std::size_t max_models = 256;

struct options {
  std::string base_url;                       // "" = none given
  std::string base_url_where = "--base-url";  // where it was given, for errors (never the URL)
  std::string api_key_env = "OPENAI_API_KEY";
  std::vector<std::string> models;             // standard entries, in order
  std::vector<std::string> context_fallbacks;  // context-window entries
  std::vector<std::string> policy_fallbacks;   // content-policy entries (opt-in)
  std::map<std::string, route> routes;         // per model, from the config file
  std::vector<std::string> config_names;       // the models the config file's lists name
  long long max_attempts = 5;
  long long base_delay_ms = 1000;
  long long max_delay_ms = 30000;
  failover::jitter jitter = failover::jitter::rising;
  std::optional<long long> deadline_ms;
  long long connect_timeout_ms = 10000;
  long long read_timeout_ms = 60000;
  long long max_hops = 5;
  long long max_server_wait_ms = 60000;
  long long max_read_timeout_retries = 1;  // as retry_options: a slow model may still be working
};

// The command line before it is applied: settings in order, plus what is not a setting.
struct command_line {
  std::vector<std::pair<std::string, std::string>> settings;  // flag (without "--"), value
  std::optional<std::string> config;
  std::optional<std::string> prompt;
  bool trace_json = false;
  bool help = false;
  bool has(std::string_view flag) const {
    for (const auto& s : settings)
      if (s.first == flag) return true;
    return false;
  }
};

namespace detail {

enum class value_kind { integer, text, list, jitter };

struct setting {
  std::string_view flag;  // on the command line, after "--"
  std::string_view key;   // in the config file
  value_kind kind;
  long long min;  // for integers
  std::function<void(options&, long long)> set_int;
  std::function<void(options&, const std::string&)> set_text;
};

inline const std::vector<setting>& settings() {
  using o = options;
  static const std::vector<setting> table = {
      {"base-url",
       "base_url",
       value_kind::text,
       0,
       {},
       [](o& x, const std::string& v) { x.base_url = v; }},
      {"api-key-env",
       "api_key_env",
       value_kind::text,
       0,
       {},
       [](o& x, const std::string& v) { x.api_key_env = v; }},
      {"model",
       "models",
       value_kind::list,
       0,
       {},
       [](o& x, const std::string& v) { x.models.push_back(v); }},
      {"context-fallback",
       "context_fallbacks",
       value_kind::list,
       0,
       {},
       [](o& x, const std::string& v) { x.context_fallbacks.push_back(v); }},
      {"policy-fallback",
       "policy_fallbacks",
       value_kind::list,
       0,
       {},
       [](o& x, const std::string& v) { x.policy_fallbacks.push_back(v); }},
      {"max-attempts",
       "max_attempts",
       value_kind::integer,
       1,
       [](o& x, long long v) { x.max_attempts = v; },
       {}},
      {"base-delay-ms",
       "base_delay_ms",
       value_kind::integer,
       1,
       [](o& x, long long v) { x.base_delay_ms = v; },
       {}},
      {"max-delay-ms",
       "max_delay_ms",
       value_kind::integer,
       1,
       [](o& x, long long v) { x.max_delay_ms = v; },
       {}},
      {"jitter", "jitter", value_kind::jitter, 0, {}, {}},
      {"deadline-ms",
       "deadline_ms",
       value_kind::integer,
       1,
       [](o& x, long long v) { x.deadline_ms = v; },
       {}},
      {"connect-timeout-ms",
       "connect_timeout_ms",
       value_kind::integer,
       1,
       [](o& x, long long v) { x.connect_timeout_ms = v; },
       {}},
      {"read-timeout-ms",
       "read_timeout_ms",
       value_kind::integer,
       1,
       [](o& x, long long v) { x.read_timeout_ms = v; },
       {}},
      {"max-hops",
       "max_hops",
       value_kind::integer,
       1,
       [](o& x, long long v) { x.max_hops = v; },
       {}},
      {"max-server-wait-ms",
       "max_server_wait_ms",
       value_kind::integer,
       0,
       [](o& x, long long v) { x.max_server_wait_ms = v; },
       {}},
      {"max-read-timeout-retries",
       "max_read_timeout_retries",
       value_kind::integer,
       0,
       [](o& x, long long v) { x.max_read_timeout_retries = v; },
       {}},
  };
  return table;
}

// Keys a LiteLLM config uses, with what failover-chat reads instead: such a file is the likeliest
// one to be handed over, and "unknown key" alone would not say what to write.
inline std::string_view litellm_hint(std::string_view key, bool in_model_list) {
  static constexpr std::string_view api_key =
      "write \"api_key_env\": the name of the variable that holds the key (a key is never read "
      "from the file)";
  if (key == "api_base") return "write \"base_url\" (LiteLLM's api_base)";
  if (key == "api_key") return api_key;
  if (in_model_list) {
    if (key == "litellm_params")
      return "LiteLLM's litellm_params: write its fields in the entry itself: \"model\", "
             "\"base_url\" (for api_base) and \"api_key_env\" (NAME, for api_key: "
             "os.environ/NAME)";
    if (key == "model_info" || key == "tpm" || key == "rpm")
      return "a LiteLLM key that failover-chat does not use: remove it";
    return {};
  }
  if (key == "router_settings" || key == "litellm_settings" || key == "general_settings" ||
      key == "environment_variables")
    return "a LiteLLM section: failover-chat reads its settings at the top level (models, "
           "context_fallbacks, policy_fallbacks, max_attempts, ...)";
  if (key == "fallbacks") return "write the chain in order as \"models\": [...]";
  if (key == "context_window_fallbacks") return "write \"context_fallbacks\": [...]";
  if (key == "content_policy_fallbacks") return "write \"policy_fallbacks\": [...]";
  if (key == "num_retries")
    return "write \"max_attempts\": attempts in all, the first included (num_retries + 1)";
  if (key == "timeout" || key == "request_timeout")
    return "write \"read_timeout_ms\" (per attempt) or \"deadline_ms\" (the whole call), in "
           "milliseconds";
  return {};
}

inline const setting* find_setting(std::string_view flag) {
  for (const auto& s : settings())
    if (s.flag == flag) return &s;
  return nullptr;
}

inline const setting* find_key(std::string_view key) {
  for (const auto& s : settings())
    if (s.key == key) return &s;
  return nullptr;
}

inline std::vector<std::string>& list_of(options& x, std::string_view flag) {
  return flag == "model"              ? x.models
         : flag == "context-fallback" ? x.context_fallbacks
                                      : x.policy_fallbacks;
}

// A week in milliseconds: larger values are typos, and they would overflow nanoseconds later.
inline constexpr long long max_ms = 7LL * 24 * 3600 * 1000;

inline usage_error too_large(const std::string& where) {
  return usage_error(where + ": too large (at most " + std::to_string(max_ms) + ")");
}

inline void apply_integer(options& x, const setting& s, long long v, const std::string& where) {
  if (v < s.min)
    throw usage_error(where + ": must be at least " + std::to_string(s.min) + ", got " +
                      std::to_string(v));
  if (v > max_ms) throw too_large(where);
  s.set_int(x, v);
}

// A whole number from the command line; out of range is named as such, not as a typo.
inline long long read_integer(const setting& s, const std::string& value,
                              const std::string& where) {
  long long v = 0;
  const char* end = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(value.data(), end, v);
  if (ec == std::errc::result_out_of_range && ptr == end) {
    if (value.front() != '-') throw too_large(where);
    throw usage_error(where + ": must be at least " + std::to_string(s.min));
  }
  if (ec != std::errc() || ptr != end)
    throw usage_error(where + ": expected a whole number, got '" + value + "'");
  return v;
}

inline void apply_jitter(options& x, const std::string& v, const std::string& where) {
  for (auto j : {failover::jitter::none, failover::jitter::full, failover::jitter::equal,
                 failover::jitter::decorrelated, failover::jitter::rising}) {
    if (failover::to_string(j) == v) {
      x.jitter = j;
      return;
    }
  }
  throw usage_error(where + ": must be none, full, equal, decorrelated or rising, got '" + v + "'");
}

inline void apply_text(options& x, const setting& s, const std::string& v,
                       const std::string& where) {
  if (v.empty()) throw usage_error(where + ": must not be empty");
  if (s.kind == value_kind::jitter) return apply_jitter(x, v, where);
  s.set_text(x, v);
  if (s.key == "base_url") x.base_url_where = where;
}

inline usage_error too_many(const std::string& where) {
  return usage_error(where + ": more than " + std::to_string(max_models) + " models (at most " +
                     std::to_string(max_models) + " per list and in all)");
}

}  // namespace detail

// Reads argv. Throws usage_error naming the flag that is wrong.
inline command_line read_command_line(int argc, const char* const* argv) {
  command_line cl;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      if (i + 2 != argc) throw usage_error("expected exactly one PROMPT after --");
      cl.prompt = argv[i + 1];
      break;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      if (cl.prompt) throw usage_error("more than one PROMPT given (quote the prompt)");
      cl.prompt = arg;
      continue;
    }
    std::string flag = arg.substr(2);
    std::optional<std::string> inline_value;
    if (const auto eq = flag.find('='); eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    if (flag == "help" || flag == "trace-json") {
      if (inline_value) throw usage_error("--" + flag + " takes no value");
      (flag == "help" ? cl.help : cl.trace_json) = true;
      continue;
    }
    const bool is_config = flag == "config";
    if (!is_config && detail::find_setting(flag) == nullptr)
      throw usage_error("unknown flag --" + flag);
    // A value that looks like a flag is one: "--model --max-attempts 3" forgot the model.
    // (A value that starts with "--" can still be given as --flag=VALUE.)
    std::string value;
    if (inline_value) {
      if (inline_value->empty()) throw usage_error("--" + flag + " needs a value");
      value = *inline_value;
    } else {
      if (i + 1 >= argc) throw usage_error("--" + flag + " needs a value");
      const std::string next = argv[i + 1];
      if (next.rfind("--", 0) == 0)
        throw usage_error("--" + flag + " needs a value (" + next + " is a flag, not a value)");
      value = next;
      ++i;
    }
    if (is_config) {
      if (cl.config) throw usage_error("--config given twice");
      cl.config = value;
    } else {
      cl.settings.emplace_back(flag, value);
    }
  }
  return cl;
}

// Applies flags in order; a repeated single-valued flag keeps the last value, and any list flag
// replaces that list from the config file.
inline void apply_flags(options& x, const command_line& cl) {
  std::vector<std::string_view> cleared;
  for (const auto& [flag, value] : cl.settings) {
    const detail::setting& s = *detail::find_setting(flag);
    const std::string where = "--" + flag;
    if (s.kind == detail::value_kind::integer) {
      detail::apply_integer(x, s, detail::read_integer(s, value, where), where);
    } else {
      if (s.kind == detail::value_kind::list &&
          std::find(cleared.begin(), cleared.end(), s.flag) == cleared.end()) {
        detail::list_of(x, s.flag).clear();
        cleared.push_back(s.flag);
      }
      if (s.kind == detail::value_kind::list && detail::list_of(x, s.flag).size() >= max_models)
        throw detail::too_many(where);
      detail::apply_text(x, s, value, where);
    }
  }
}

// Checks what only the whole set of settings shows, once flags and file are both applied: each
// model is named once across the three lists, and every model_list entry is for a model that
// the file's lists or the flags name (a misspelt model_name would otherwise be ignored, and its
// model called at the wrong address).
// Linear: the names go into sets, so even a long list costs no quadratic search.
inline void check_models(const options& x) {
  if (x.models.size() + x.context_fallbacks.size() + x.policy_fallbacks.size() > max_models)
    throw detail::too_many(
        "models, context_fallbacks and policy_fallbacks (or --model, --context-fallback and "
        "--policy-fallback) together");
  std::set<std::string_view> seen;
  for (const auto* list : {&x.models, &x.context_fallbacks, &x.policy_fallbacks}) {
    for (const auto& m : *list) {
      if (!seen.insert(m).second)
        throw usage_error("model '" + m +
                          "' is listed twice (--model, --context-fallback and "
                          "--policy-fallback, or models, context_fallbacks and policy_fallbacks, "
                          "name each model once)");
    }
  }
  const std::set<std::string_view> in_file(x.config_names.begin(), x.config_names.end());
  for (const auto& route_of : x.routes) {
    const std::string& name = route_of.first;
    if (seen.count(name) == 0 && in_file.count(name) == 0)
      throw usage_error(route_of.second.where + ": '" + name +
                        "' is not a model of the chain (not in models, context_fallbacks or "
                        "policy_fallbacks, nor given by a flag)");
  }
}

// Applies a config file's settings. Keys are the flags' names with '_' for '-', plus
// "model_list": [{"model_name", "model", "base_url", "api_key_env"}]. Throws usage_error naming
// the file and the JSON path that is wrong.
inline void apply_config(options& x, const nlohmann::json& j, const std::string& file) {
  auto fail = [&](const std::string& path, const std::string& why) {
    return usage_error(file + ": " + path + ": " + why);
  };
  if (!j.is_object()) throw fail("$", "expected a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& v = it.value();
    const std::string path = "$." + key;
    if (key == "model_list") {
      if (!v.is_array()) throw fail(path, "expected an array of models");
      if (v.size() > max_models)
        throw fail(path, "more than " + std::to_string(max_models) + " entries (at most " +
                             std::to_string(max_models) + ")");
      for (std::size_t i = 0; i < v.size(); ++i) {
        const std::string at = path + "[" + std::to_string(i) + "]";
        const nlohmann::json& m = v[i];
        if (!m.is_object()) throw fail(at, "expected an object");
        std::string name;
        route r;
        for (auto f = m.begin(); f != m.end(); ++f) {
          const std::string field_path = at + "." + f.key();
          std::string* field = f.key() == "model_name"    ? &name
                               : f.key() == "model"       ? &r.upstream
                               : f.key() == "base_url"    ? &r.base_url
                               : f.key() == "api_key_env" ? &r.api_key_env
                                                          : nullptr;
          if (field == nullptr) {
            const auto hint = detail::litellm_hint(f.key(), true);
            throw fail(field_path,
                       "unknown key (expected model_name, model, base_url or api_key_env)" +
                           (hint.empty() ? std::string() : "; " + std::string(hint)));
          }
          if (!f.value().is_string() || f.value().get<std::string>().empty())
            throw fail(field_path, "expected a non-empty string");
          *field = f.value().get<std::string>();
        }
        if (name.empty()) throw fail(at, "missing model_name");
        if (x.routes.count(name)) throw fail(at + ".model_name", "'" + name + "' is listed twice");
        r.where = file + ": " + at + ".model_name";
        r.base_url_where = file + ": " + at + ".base_url";
        x.routes[name] = r;
      }
      continue;
    }
    const detail::setting* s = detail::find_key(key);
    if (s == nullptr) {
      const auto hint = detail::litellm_hint(key, false);
      throw fail(path, "unknown key" + (hint.empty() ? std::string() : "; " + std::string(hint)));
    }
    switch (s->kind) {
      case detail::value_kind::integer:
        if (!v.is_number_integer()) throw fail(path, "expected a whole number");
        // Above LLONG_MAX nlohmann-json keeps the number unsigned: read as signed it would wrap.
        if (v.is_number_unsigned() &&
            v.get<unsigned long long>() >
                static_cast<unsigned long long>(std::numeric_limits<long long>::max()))
          throw detail::too_large(file + ": " + path);
        detail::apply_integer(x, *s, v.get<long long>(), file + ": " + path);
        break;
      case detail::value_kind::list:
        if (!v.is_array()) throw fail(path, "expected an array of model names");
        if (v.size() > max_models) throw detail::too_many(file + ": " + path);
        {
          std::vector<std::string>& list = detail::list_of(x, s->flag);
          list.clear();
          for (std::size_t i = 0; i < v.size(); ++i) {
            const std::string at = path + "[" + std::to_string(i) + "]";
            if (!v[i].is_string() || v[i].get<std::string>().empty())
              throw fail(at, "expected a non-empty string");
            list.push_back(v[i].get<std::string>());
            x.config_names.push_back(list.back());
          }
        }
        break;
      default:
        if (!v.is_string()) throw fail(path, "expected a string");
        detail::apply_text(x, *s, v.get<std::string>(), file + ": " + path);
        break;
    }
  }
}

// Whether a file that is not JSON reads as YAML: its first line that is not blank or a comment
// is "key:" or "key: value" (a LiteLLM config starts "model_list:"), or a "- " list item.
inline bool looks_like_yaml(std::string_view body) {
  std::size_t at = 0;
  while (at < body.size()) {
    std::size_t end = body.find('\n', at);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(at, end - at);
    at = end + 1;
    const std::size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line[first] == '#') continue;
    line.remove_prefix(first);
    if (line == "---" || line.rfind("- ", 0) == 0) return true;
    std::size_t n = 0;
    while (n < line.size() && (std::isalnum(static_cast<unsigned char>(line[n])) != 0 ||
                               line[n] == '_' || line[n] == '-'))
      ++n;
    return n > 0 && n < line.size() && line[n] == ':' &&
           (n + 1 == line.size() || line[n + 1] == ' ' || line[n + 1] == '\r');
  }
  return false;
}

// A config file is a few kilobytes; anything near this size is the wrong file.
inline constexpr std::size_t max_config_bytes = std::size_t{1} << 20;

// Reads and parses a config file: a regular file of at most 1 MiB. A directory, a device or a
// pipe is refused before it is opened (reading /dev/zero would never end), and the read itself
// stops after the limit, so a file that grows meanwhile is refused too.
inline nlohmann::json read_config_file(const std::string& file) {
  auto fail = [&](const std::string& why) { return usage_error(file + ": " + why); };
  std::error_code ec;
  const auto st = std::filesystem::status(file, ec);
  if (ec || !std::filesystem::exists(st)) throw fail("cannot read the config file (no such file)");
  if (std::filesystem::is_directory(st)) throw fail("is a directory, not a config file");
  if (!std::filesystem::is_regular_file(st))
    throw fail("is not a regular file (a device, pipe or socket), not a config file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw fail("cannot read the config file");
  std::string body(max_config_bytes + 1, '\0');
  in.read(body.data(), static_cast<std::streamsize>(body.size()));
  if (in.bad()) throw fail("cannot read the config file");
  body.resize(static_cast<std::size_t>(in.gcount()));
  if (body.size() > max_config_bytes) throw fail("larger than 1 MiB, not a config file");
  try {
    return nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() quotes the input near the error ("last read: '...'"), and a config file may hold
    // a secret by mistake: say where, never what.
    std::size_t line = 1;
    std::size_t column = 1;
    const std::size_t end = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, body.size());
    for (std::size_t i = 0; i < end; ++i) {
      if (body[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string why = "not valid JSON (line " + std::to_string(line) + ", column " +
                      std::to_string(column) + "): the config file must be JSON";
    if (looks_like_yaml(body))
      why +=
          "; it looks like YAML (a LiteLLM config?): write the same settings as a JSON "
          "object, e.g. {\"models\": [\"gpt-4o\"], \"model_list\": [{\"model_name\": "
          "\"gpt-4o\", \"model\": \"gpt-4o-2024-08-06\", \"base_url\": \"...\", "
          "\"api_key_env\": \"OPENAI_API_KEY\"}]} (see docs/cli.md)";
    throw fail(why);
  }
}

}  // namespace chat
