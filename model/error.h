// The one error type a user can cause: a bad file, a bad flag, a missing device, too little memory.
// Its message names the file, tensor or flag and says what to do. Only apps/ turns it into an exit code;
// programmer errors are assertions, never this type.
#pragma once

#include <stdexcept>
#include <string>

namespace mole {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A step that stopped because its caller asked it to (Engine::set_cancel: Ctrl-C, a Stop button), not because
// anything was wrong: "interrupted" for the user, and callers that stop cleanly (Session::generate) catch it.
class StepCancelled : public Error {
 public:
  StepCancelled() : Error("interrupted") {}
};

}  // namespace mole
