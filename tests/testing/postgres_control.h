// The C++ side of tests/testing/postgres_instance.py: a test binary run as
//   python3 tests/testing/postgres_instance.py -- <test binary>
// finds the throwaway PostgreSQL's DSN in $ANYAI_TEST_POSTGRES_DSN, and can stop and start that
// server (to simulate an outage) through the control fifo in $ANYAI_TEST_POSTGRES_CONTROL: it
// writes "stop" or "start" and waits for the reply ("ok", or "error ..."). Every wait is bounded
// by the python side's own timeouts (a start waits at most 60 s for the server).
//
//   std::string dsn = anyai::testing::PostgresDsn();   // "" when not run under the wrapper
//   ASSERT_TRUE(anyai::testing::PostgresControl("stop"));
//
// Not thread-safe: call from the test's main thread.
#ifndef ANYAI_TESTS_TESTING_POSTGRES_CONTROL_H_
#define ANYAI_TESTS_TESTING_POSTGRES_CONTROL_H_

#include <cstdlib>
#include <fstream>
#include <string>

namespace anyai::testing {

inline std::string PostgresDsn() {
  const char* dsn = std::getenv("ANYAI_TEST_POSTGRES_DSN");
  return dsn == nullptr ? std::string() : std::string(dsn);
}

// Sends "stop" or "start"; true when the wrapper answered "ok".
inline bool PostgresControl(const std::string& command) {
  const char* path = std::getenv("ANYAI_TEST_POSTGRES_CONTROL");
  if (path == nullptr) return false;
  {
    std::ofstream control(path);
    control << command << "\n";
    if (!control.good()) return false;
  }
  std::ifstream reply(std::string(path) + ".reply");
  std::string line;
  std::getline(reply, line);
  return line == "ok";
}

}  // namespace anyai::testing

#endif  // ANYAI_TESTS_TESTING_POSTGRES_CONTROL_H_
