// Where mole's data lives at run time, found from the executable's own path, so that a build tree, an installed
// prefix (`cmake --install build --prefix P`) or a copied bundle runs from anywhere. Nothing here is a path fixed
// at build time.
//   build tree:  build/mole        build/share/mole/
//   installed:   P/bin/mole        P/share/mole/
// share/mole/ holds gpt-neox-tokenizer/ (the tokenizer files `mole synth` copies into a checkpoint), models/ (the
// built-in default model) and, for mole_tests, tests/.
#pragma once

#include <string>

namespace mole {

// The folder of the running executable (readlink of /proc/self/exe).
std::string executable_dir();
// share/mole beside or above the executable; throws mole::Error naming the places searched when neither exists.
std::string data_dir();
// data_dir()/models/NAME, NAME the built-in default model compiled in (MOLE_DEFAULT_MODEL_NAME). The folder may be
// missing (a bundle carries the training form instead); callers check and say what to do.
std::string builtin_model_dir();
// The built-in default model's name ("kjv-mole-4l", or "tiny" for a checkout that ships no trained model).
std::string builtin_model_name();

}  // namespace mole
