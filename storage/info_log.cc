#include "storage/info_log.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace anyai::storage {
namespace {

// RocksDB's header for a line: "2026/01/01-12:00:00.000123 7f1c2a3b4c5d ", local time.
size_t FormatPrefix(char* out, size_t size) {
  struct timeval now;
  gettimeofday(&now, nullptr);
  struct tm t;
  localtime_r(&now.tv_sec, &t);
  const int n = std::snprintf(out, size, "%04d/%02d/%02d-%02d:%02d:%02d.%06ld %llx ",
                              t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                              t.tm_sec, static_cast<long>(now.tv_usec),
                              static_cast<unsigned long long>(pthread_self()));
  return n < 0 ? 0 : std::min(static_cast<size_t>(n), size - 1);
}

}  // namespace

std::shared_ptr<InfoLog> InfoLog::Open(const std::string& dir, rocksdb::InfoLogLevel level) {
  const std::string path = dir + "/LOG";
  struct stat existing;
  if (stat(path.c_str(), &existing) == 0) {
    struct timeval now;
    gettimeofday(&now, nullptr);
    const std::string old =
        dir + "/LOG.old." +
        std::to_string(static_cast<int64_t>(now.tv_sec) * 1'000'000 + now.tv_usec);
    if (std::rename(path.c_str(), old.c_str()) != 0) {
      std::fprintf(stderr, "anyai storage: cannot rename the old RocksDB LOG: %s\n",
                   std::strerror(errno));
    }
  }
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "anyai storage: cannot open RocksDB's LOG (%s); it is discarded\n",
                 std::strerror(errno));
  }
  return std::shared_ptr<InfoLog>(new InfoLog(fd, level));
}

std::shared_ptr<InfoLog> InfoLog::ForDescriptor(int fd, rocksdb::InfoLogLevel level) {
  return std::shared_ptr<InfoLog>(new InfoLog(fd, level));
}

InfoLog::~InfoLog() {
  if (fd_ >= 0) close(fd_);
}

void InfoLog::Logv(const char* format, va_list ap) {
  if (fd_ < 0) return;
  char stack[512];
  size_t prefix = FormatPrefix(stack, sizeof(stack));
  va_list copy;
  va_copy(copy, ap);
  const int body = std::vsnprintf(stack + prefix, sizeof(stack) - prefix, format, copy);
  va_end(copy);
  if (body < 0) return;
  std::vector<char> heap;
  char* line = stack;
  size_t length = prefix + static_cast<size_t>(body);
  if (length + 1 >= sizeof(stack)) {  // did not fit with its newline: format again, on the heap
    heap.resize(length + 2);
    std::memcpy(heap.data(), stack, prefix);
    std::vsnprintf(heap.data() + prefix, heap.size() - prefix, format, ap);
    line = heap.data();
  }
  if (length == 0 || line[length - 1] != '\n') line[length++] = '\n';
  const ssize_t written = write(fd_, line, length);
  if (written != static_cast<ssize_t>(length)) lost_lines_.fetch_add(1, std::memory_order_relaxed);
}

size_t InfoLog::GetLogFileSize() const {
  struct stat s;
  if (fd_ < 0 || fstat(fd_, &s) != 0) return 0;
  return static_cast<size_t>(s.st_size);
}

}  // namespace anyai::storage
