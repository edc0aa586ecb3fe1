// A minimal diagnostic log on stderr, chosen by the environment variable
// RECUR_LOG: "off" (the default), "error", "warn", "info" or "debug". Read
// once per process. Library code says *why* it chose something (e.g. the
// persistent-RNN planner, docs/persistent.md); it never prints otherwise.
#pragma once

#include <string>

#include "recur/common/error.h"

namespace recur {

enum class LogLevel : int { Off = 0, Error = 1, Warn = 2, Info = 3, Debug = 4 };

// The level RECUR_LOG asks for (an unknown value counts as "debug", so a
// typo shows more rather than less).
LogLevel log_level();
// For tests and tools: overrides RECUR_LOG for the rest of the process.
void set_log_level(LogLevel level);
inline bool log_enabled(LogLevel level) { return level != LogLevel::Off && level <= log_level(); }
// Writes "recur[<level>]: <message>\n" to stderr in one call.
void log_message(LogLevel level, const std::string& message);

}  // namespace recur

// RECUR_LOG_DEBUG(parts...): the parts are streamed only when debug is on.
#define RECUR_LOG_AT(level, ...)                                                    \
  do {                                                                              \
    if (::recur::log_enabled(level))                                                \
      ::recur::log_message(level, ::recur::detail::concat(__VA_ARGS__));            \
  } while (0)
#define RECUR_LOG_DEBUG(...) RECUR_LOG_AT(::recur::LogLevel::Debug, __VA_ARGS__)
#define RECUR_LOG_INFO(...) RECUR_LOG_AT(::recur::LogLevel::Info, __VA_ARGS__)
