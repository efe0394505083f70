// The KeyStore contract (storage/key_store.h) as one suite of value-parameterized tests, so that
// every implementation passes the same tests: a test binary compiles key_store_contract.cc and
// instantiates KeyStoreContractTest with a factory for its own store.
//
//   INSTANTIATE_TEST_SUITE_P(RocksDb, KeyStoreContractTest,
//                            ::testing::Values(KeyStoreFactory{"RocksDb", [] { ... }}),
//                            KeyStoreFactory::Name);
//
// What only one implementation promises (RocksDB: reopening, faults on disk; PostgreSQL:
// replicas, outages) stays in that implementation's own tests.
//
// Thread safety: test code; each test makes its own store.
#ifndef ANYAI_TESTS_STORAGE_KEY_STORE_CONTRACT_H_
#define ANYAI_TESTS_STORAGE_KEY_STORE_CONTRACT_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "storage/key_store.h"

namespace anyai::storage {

// A store under test, and whatever it borrows (a database, a connection pool), kept alive by
// `owner` for as long as the test runs.
struct TestKeyStore {
  std::shared_ptr<void> owner;
  KeyStore* store = nullptr;
};

// `opened` moved into `held->store` and returned with `held` as its owner; an error is reported
// with ADD_FAILURE and gives a null store. `Held` is the factory's own struct of what the store
// borrows, with a `std::unique_ptr<S> store` member.
template <typename Held, typename S>
TestKeyStore Hold(std::shared_ptr<Held> held, absl::StatusOr<std::unique_ptr<S>> opened) {
  if (!opened.ok()) {
    ADD_FAILURE() << opened.status();
    return {};
  }
  held->store = *std::move(opened);
  KeyStore* store = held->store.get();
  return {.owner = std::move(held), .store = store};
}

struct KeyStoreFactory {
  std::string name;  // the instantiation's name in test names
  // A fresh, empty store; a failure is reported with ADD_FAILURE and a null store.
  std::function<TestKeyStore()> make;

  static std::string Name(const ::testing::TestParamInfo<KeyStoreFactory>& info) {
    return info.param.name;
  }
};

class KeyStoreContractTest : public ::testing::TestWithParam<KeyStoreFactory> {
 protected:
  void SetUp() override;
  CreatedKey MustCreate(const std::string& plan = "free", const std::string& label = "");

  TestKeyStore held_;
  KeyStore* store_ = nullptr;
};

}  // namespace anyai::storage

#endif  // ANYAI_TESTS_STORAGE_KEY_STORE_CONTRACT_H_
