// The build's commit (cmake/version.cmake writes mole_version.h at every build), for `mole --version` and the
// results of `mole bench`.
#include "mole_version.h"

#include "apps/mole_commands.h"

namespace mole::app {

const char* build_commit() {
  return MOLE_BUILD_COMMIT;
}

}  // namespace mole::app
