// Pythia 8 tau decays as a shared library for the engine's own process (loaded with ctypes):
// the trace of tau_trace.h, its messages answered by C callbacks instead of PPX messages, so no
// socket, no second process, and a function call per random number instead of a round trip.
//
// C API (every function catches everything: no C++ exception reaches the caller):
//   pythia8_tau_create(xmldoc, settings, n_settings, background, error, error_size) -> handle
//       Pythia initialised as the PPX front end does (same settings, same fixed-seed start-up);
//       NULL on failure, with the reason in ``error``.
//   pythia8_tau_run(handle, callbacks, error, error_size) -> 0 done, 1 a callback asked to stop
//       (returned non-zero), 2 a C++ error (its message in ``error``).
//   pythia8_tau_destroy(handle)
// A callback that returns non-zero breaks the trace off: an exception unwinds out of Pythia to
// pythia8_tau_run, which returns 1; the caller re-raises whatever its callback kept.

#include <exception>

#include "tau_trace.h"

#define EXPORT extern "C" __attribute__((visibility("default")))

extern "C" {
struct pythia8_tau_callbacks {
  int (*uniform)(const char* address, const char* name, double low, double high, double* value);
  int (*tag)(const char* address, const char* name, const double* value, int64_t size, const int32_t* shape,
             int32_t ndim);
  int (*observe_poisson)(const char* address, const char* name, const double* rates, int64_t size,
                         const int32_t* shape, int32_t ndim);
  int (*result)(const double* value, int64_t size, const int32_t* shape, int32_t ndim);
};
}

namespace {

struct Stopped {};  // a callback returned non-zero

void check(int status) {
  if (status != 0) throw Stopped();
}

class Callbacks : public tau::Controller {
 public:
  explicit Callbacks(const pythia8_tau_callbacks& c) : c_(c) {}

  double uniform(const std::string& address, const char* name, double low, double high) override {
    double value = 0.0;
    check(c_.uniform(address.c_str(), name, low, high, &value));
    return value;
  }

  using tau::Controller::tag;
  void tag(const std::string& address, const char* name, const std::vector<double>& value,
           const std::vector<int32_t>& shape) override {
    check(c_.tag(address.c_str(), name, value.data(), static_cast<int64_t>(value.size()), shape.data(),
                 static_cast<int32_t>(shape.size())));
  }

  void observe_poisson(const std::string& address, const char* name, const std::vector<double>& rates,
                       const std::vector<int32_t>& shape) override {
    check(c_.observe_poisson(address.c_str(), name, rates.data(), static_cast<int64_t>(rates.size()),
                             shape.data(), static_cast<int32_t>(shape.size())));
  }

  void result(const std::vector<double>& value, const std::vector<int32_t>& shape) override {
    check(c_.result(value.data(), static_cast<int64_t>(value.size()), shape.data(),
                    static_cast<int32_t>(shape.size())));
  }

 private:
  pythia8_tau_callbacks c_;
};

struct Generator {
  tau::Setup setup;
  std::shared_ptr<tau::ControlledRndmEngine> engine;
  std::unique_ptr<Pythia8::Pythia> pythia;
};

void write_error(char* error, size_t size, const char* what) {
  if (error != nullptr && size > 0) std::snprintf(error, size, "%s", what);
}

}  // namespace

EXPORT void* pythia8_tau_create(const char* xmldoc, const char* const* settings, int n_settings,
                                double background, char* error, size_t error_size) {
  try {
    auto g = std::make_unique<Generator>();
    g->setup.xmldoc = xmldoc;
    for (int i = 0; i < n_settings; ++i) g->setup.settings.emplace_back(settings[i]);
    g->setup.background = background;
    g->engine = std::make_shared<tau::ControlledRndmEngine>();
    g->pythia = tau::make_pythia(g->setup, g->engine, 0);
    return g.release();
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
  } catch (...) {
    write_error(error, error_size, "unknown C++ exception while initialising Pythia");
  }
  return nullptr;
}

EXPORT int pythia8_tau_run(void* handle, const pythia8_tau_callbacks* callbacks, char* error, size_t error_size) {
  auto* g = static_cast<Generator*>(handle);
  try {
    Callbacks controller(*callbacks);
    tau::run_trace(controller, *g->pythia, *g->engine, g->setup.background);
    return 0;
  } catch (const Stopped&) {
    return 1;
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
  } catch (...) {
    write_error(error, error_size, "unknown C++ exception during a trace");
  }
  return 2;
}

EXPORT void pythia8_tau_destroy(void* handle) { delete static_cast<Generator*>(handle); }
