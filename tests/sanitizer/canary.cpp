// Deliberately broken, one bug per sanitizer: the sanitizer gates expect each run to be reported,
// which proves the suite really was built with that sanitizer. Never part of a normal build.
#include <climits>
#include <cstdio>
#include <cstring>
#include <thread>

namespace {

int heap_use_after_free() {
  int* p = new int[4]{1, 2, 3, 4};
  delete[] p;
  return p[1];  // ASan: heap-use-after-free
}

int signed_overflow(int volatile big) {
  return big + 1;  // UBSan: signed integer overflow
}

int data_race() {
  int shared = 0;
  std::thread a([&] { ++shared; });  // TSan: data race
  std::thread b([&] { ++shared; });
  a.join();
  b.join();
  return shared;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  if (std::strcmp(argv[1], "address") == 0) return heap_use_after_free();
  if (std::strcmp(argv[1], "undefined") == 0) return signed_overflow(INT_MAX);
  if (std::strcmp(argv[1], "thread") == 0) return data_race();
  std::fprintf(stderr, "canary: unknown mode %s\n", argv[1]);
  return 2;
}
