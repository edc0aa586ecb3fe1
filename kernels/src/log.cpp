// RECUR_LOG (recur/common/log.h).
#include "recur/common/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace recur {
namespace {

LogLevel parse(const char* s) {
  if (!s || !*s || !std::strcmp(s, "off") || !std::strcmp(s, "0")) return LogLevel::Off;
  if (!std::strcmp(s, "error")) return LogLevel::Error;
  if (!std::strcmp(s, "warn") || !std::strcmp(s, "warning")) return LogLevel::Warn;
  if (!std::strcmp(s, "info")) return LogLevel::Info;
  return LogLevel::Debug;
}

std::atomic<int>& level_slot() {
  static std::atomic<int> level{int(parse(std::getenv("RECUR_LOG")))};
  return level;
}

const char* name(LogLevel level) {
  switch (level) {
    case LogLevel::Error: return "error";
    case LogLevel::Warn: return "warn";
    case LogLevel::Info: return "info";
    case LogLevel::Debug: return "debug";
    case LogLevel::Off: break;
  }
  return "log";
}

}  // namespace

LogLevel log_level() { return LogLevel(level_slot().load(std::memory_order_relaxed)); }

void set_log_level(LogLevel level) { level_slot().store(int(level), std::memory_order_relaxed); }

void log_message(LogLevel level, const std::string& message) {
  const std::string line = std::string("recur[") + name(level) + "]: " + message + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace recur
