// The one doctest main() shared by every tests/test_*.cpp file. It takes one option of its own besides doctest's:
//   --require-device[=NAME,...]  a case that would be skipped for want of a device of these backends (default:
//                                every GPU backend this build has), or of the validation layer, fails instead, so
//                                that a GPU check whose tests saw no GPU cannot pass (scripts/gpu-check.sh)
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_helpers.h"

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; i++) {
    if (std::strcmp(argv[i], "--require-device") == 0) {
      mole::test::required_backends() = {"*"};
    } else if (std::strncmp(argv[i], "--require-device=", 17) == 0) {
      std::stringstream names(argv[i] + 17);
      for (std::string n; std::getline(names, n, ',');) mole::test::required_backends().push_back(n);
    } else
      args.push_back(argv[i]);
  }
  doctest::Context context(int(args.size()), args.data());
  return context.run();
}
