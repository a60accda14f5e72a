# Writes OUT, a header defining MOLE_BUILD_COMMIT, from the git checkout in SRC: the commit's short hash, "-dirty"
# after it when tracked files differ from it, or "unknown" without git or a checkout (a source tarball). Run at every
# build (the mole_version target); the header is rewritten only when its text changes, so nothing recompiles
# otherwise.
execute_process(COMMAND git -C "${SRC}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR commit STREQUAL "")
  set(commit "unknown")
else()
  execute_process(COMMAND git -C "${SRC}" diff --quiet HEAD -- RESULT_VARIABLE changed ERROR_QUIET)
  if(NOT changed EQUAL 0)
    string(APPEND commit "-dirty")
  endif()
endif()
set(text "// Written by cmake/version.cmake at build time.\n#define MOLE_BUILD_COMMIT \"${commit}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
