// One trace of Pythia 8 tau decays under control, written once for every way an engine can
// reach it: the PPX front end (pythia8_tau_ppx.cpp, over ZeroMQ) and the in-process library
// (pythia8_tau_inprocess.cpp, C callbacks into the engine's Python). Both implement
// tau::Controller; everything the trace sends -- addresses, names, values, order -- is decided
// here, so the two give the same trace bit for bit.
//
// A trace:
//   px ~ U(-3, 3), py ~ U(-3, 3), pz ~ U(43, 47)      named samples (toy_tau_decay's priors)
//   a tau- of that momentum decayed by Pythia          every flat() a Uniform(0, 1) sample whose
//                                                      address is the native call stack
//   tags: the decay channel (index into Pythia's tau decay table), the final state, energies
//   observe "calorimeter" ~ Poisson(rates + background), 35 x 35 x 20 deposit counts: toy_tau_decay's
//     exact likelihood, the expected 5 MeV deposits per voxel (calorimeter.h) plus stray ones
//   result: rates + background.
#pragma once

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "Pythia8/Pythia.h"
#include "calorimeter.h"

namespace tau {

constexpr double TAU_MASS = 1.77686;
constexpr double LOWS[3] = {-3.0, -3.0, 43.0}, HIGHS[3] = {3.0, 3.0, 47.0};
const char* const MOMENTUM[3] = {"px", "py", "pz"};

// Whoever answers a trace's messages. An implementation may throw to break the trace off: the
// exception unwinds out of Pythia to whoever called run_trace.
class Controller {
 public:
  virtual ~Controller() = default;
  virtual double uniform(const std::string& address, const char* name, double low, double high) = 0;
  virtual void tag(const std::string& address, const char* name, const std::vector<double>& value,
                   const std::vector<int32_t>& shape) = 0;
  // Poisson(rates) of the values the engine holds under ``name`` (the trace does not know them).
  virtual void observe_poisson(const std::string& address, const char* name, const std::vector<double>& rates,
                               const std::vector<int32_t>& shape) = 0;
  virtual void result(const std::vector<double>& value, const std::vector<int32_t>& shape) = 0;

  void tag(const std::string& address, const char* name, double value) { tag(address, name, {value}, {}); }
};

// Pythia refused its settings or its initialisation.
struct SetupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// -- addresses from the native call stack ---------------------------------------------------------

// Frames walked per random number: Pythia's tau decays are 8 Pythia8:: frames deep. Walking no
// deeper keeps the cost the same whatever calls Pythia (an executable, or the dozens of frames of
// a Python interpreter), and the addresses too.
constexpr int STACK_DEPTH = 32;

// "Pythia8::TauDecays::decay(int, Pythia8::Event&)" -> "Pythia8::TauDecays::decay"
inline std::string without_arguments(const std::string& name) {
  int depth = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '<') ++depth;
    if (name[i] == '>') --depth;
    if (name[i] == '(' && depth == 0 && i > 0) return name.substr(0, i);
  }
  return name;
}

// The Pythia8:: frames of a stack (innermost first, as backtrace gives it), outermost first.
// Only frames in libpythia8.so carry a Pythia8:: name (the front ends export none), so the
// address does not depend on what called Pythia: an executable or a Python interpreter.
inline std::string stack_address(void* const* frames, int n) {
  std::vector<std::string> kept;
  int outermost = -1;
  for (int i = 0; i < n; ++i) {
    Dl_info info;
    if (!dladdr(frames[i], &info) || info.dli_sname == nullptr) continue;
    int status = 0;
    char* demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
    std::string name = status == 0 && demangled ? demangled : info.dli_sname;
    std::free(demangled);
    if (name.compare(0, 9, "Pythia8::") != 0) continue;
    char offset[32];
    std::snprintf(offset, sizeof offset, "+0x%lx",
                  static_cast<unsigned long>(static_cast<const char*>(frames[i]) -
                                             static_cast<const char*>(info.dli_saddr)));
    kept.push_back(without_arguments(name) + offset);
    outermost = i;
  }
  // Pythia's frames must end before the walk does, or the address would be cut short.
  if (n == STACK_DEPTH && outermost == n - 1)
    throw std::runtime_error("a random number drawn " + std::to_string(n) +
                             "+ frames deep in Pythia: raise STACK_DEPTH in tau_trace.h");
  std::string address;
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) address += (address.empty() ? "" : ";") + *it;
  return address.empty() ? "Pythia8" : address;
}

// flat() as a controlled sample. Outside a trace (Pythia's init) it falls back on a fixed-seed
// generator, so that start-up is deterministic and costs the engine nothing. In a trace without
// a controller it addresses every number and draws it locally (the benchmark's "addressing alone").
class ControlledRndmEngine : public Pythia8::RndmEngine {
 public:
  explicit ControlledRndmEngine(uint64_t seed = 20260601) : local_(seed) {}

  double flat() override {
    if (!in_trace_) return std::generate_canonical<double, 53>(local_);
    ++count_;
    void* frames[STACK_DEPTH];
    const int n = backtrace(frames, STACK_DEPTH);
    // Symbolising costs ~0.5 ms; the raw return addresses identify the stack just as well.
    std::string key(reinterpret_cast<const char*>(frames), n * sizeof(void*));
    auto it = addresses_.find(key);
    if (it == addresses_.end()) it = addresses_.emplace(std::move(key), stack_address(frames, n)).first;
    if (controller_ == nullptr) return std::generate_canonical<double, 53>(local_);
    return controller_->uniform(it->second, "", 0.0, 1.0);
  }

  void begin_trace(Controller* controller) { controller_ = controller; in_trace_ = true; count_ = 0; }
  void end_trace() { in_trace_ = false; controller_ = nullptr; }
  long count() const { return count_; }

 private:
  Controller* controller_ = nullptr;
  bool in_trace_ = false;
  long count_ = 0;
  std::mt19937_64 local_;
  std::unordered_map<std::string, std::string> addresses_;
};

// -- the tau -------------------------------------------------------------------------------------

struct Setup {
  std::string xmldoc;
  std::vector<std::string> settings;
  double background = 1e-4;  // mean stray deposits per voxel, as toy_tau_decay's default
};

inline std::unique_ptr<Pythia8::Pythia> make_pythia(const Setup& setup,
                                                    std::shared_ptr<Pythia8::RndmEngine> engine, int seed) {
  // This Pythia's constructor overwrites its xmldoc argument (with a path relative to the
  // library) and reads $PYTHIA8DATA first, then the compiled-in path: a build that was moved
  // would find no xmldoc. So the directory we are given goes through $PYTHIA8DATA, for the
  // constructor only (the engine's own environment is left as it was).
  std::unique_ptr<Pythia8::Pythia> pythia;
  {
    const char* before = std::getenv("PYTHIA8DATA");
    const std::string saved = before ? before : "";
    if (!setup.xmldoc.empty()) setenv("PYTHIA8DATA", setup.xmldoc.c_str(), 1);
    pythia = std::make_unique<Pythia8::Pythia>(setup.xmldoc, false);
    if (before) setenv("PYTHIA8DATA", saved.c_str(), 1);
    else unsetenv("PYTHIA8DATA");
  }
  for (const char* s : {"ProcessLevel:all = off", "TauDecays:mode = 3", "TauDecays:tauPolarization = 0",
                        "Print:quiet = on", "Next:numberCount = 0"})
    pythia->readString(s);
  for (const auto& s : setup.settings)
    if (!pythia->readString(s)) throw SetupError("Pythia does not accept the setting '" + s + "'");
  if (engine) {
    pythia->setRndmEnginePtr(engine);
  } else {
    pythia->readString("Random:setSeed = on");
    pythia->readString("Random:seed = " + std::to_string(seed));
  }
  if (!pythia->init()) throw SetupError("Pythia's initialisation failed (xmldoc " + setup.xmldoc + ")");
  return pythia;
}

inline void decay_tau(Pythia8::Pythia& pythia, double px, double py, double pz) {
  pythia.event.reset();
  const double e = std::sqrt(px * px + py * py + pz * pz + TAU_MASS * TAU_MASS);
  pythia.event.append(15, 91, 0, 0, px, py, pz, e, TAU_MASS);
  pythia.next();
}

// Index of the tau's decay in Pythia's decay table: the channel whose products are the tau's
// daughters (-1 if none matches).
inline int tau_index(const Pythia8::Event& event) {
  for (int i = 0; i < event.size(); ++i)
    if (event[i].id() == 15) return i;
  return -1;
}

inline int decay_channel(Pythia8::Pythia& pythia) {
  const Pythia8::Event& event = pythia.event;
  const int tau = tau_index(event);
  if (tau < 0) return -1;
  std::vector<int> daughters;
  for (int d : event[tau].daughterList()) daughters.push_back(event[d].id());
  std::sort(daughters.begin(), daughters.end());
  auto entry = pythia.particleData.particleDataEntryPtr(15);
  for (int c = 0; c < entry->sizeChannels(); ++c) {
    const auto& channel = entry->channel(c);
    std::vector<int> products;
    for (int j = 0; j < channel.multiplicity(); ++j) products.push_back(channel.product(j));
    std::sort(products.begin(), products.end());
    if (products == daughters) return c;
  }
  return -1;
}

struct FinalState {
  std::vector<double> pdg, p4;  // ids; rows (E, px, py, pz)
};

inline FinalState final_state(const Pythia8::Event& event) {
  FinalState f;
  for (int i = 0; i < event.size(); ++i) {
    const auto& p = event[i];
    if (!p.isFinal()) continue;
    f.pdg.push_back(p.id());
    for (double v : {p.e(), p.px(), p.py(), p.pz()}) f.p4.push_back(v);
  }
  return f;
}

// -- one trace -----------------------------------------------------------------------------------

inline void run_trace(Controller& controller, Pythia8::Pythia& pythia, ControlledRndmEngine& engine,
                      double background) {
  double p[3];
  for (int k = 0; k < 3; ++k)
    p[k] = controller.uniform(std::string("tau_") + MOMENTUM[k], MOMENTUM[k], LOWS[k], HIGHS[k]);
  {
    struct InTrace {  // also when the controller breaks off the trace inside Pythia
      ControlledRndmEngine& e;
      InTrace(ControlledRndmEngine& engine, Controller& controller) : e(engine) { e.begin_trace(&controller); }
      ~InTrace() { e.end_trace(); }
    } in_trace(engine, controller);
    decay_tau(pythia, p[0], p[1], p[2]);
  }
  const long random_numbers = engine.count();
  const int channel = decay_channel(pythia);
  const FinalState fs = final_state(pythia.event);
  const int n = static_cast<int>(fs.pdg.size());

  // Composition and energy flow, named as toy_tau_decay's tags.
  std::map<std::string, double> t;
  for (const char* k : {"n_charged_hadrons", "n_neutral_hadrons", "n_neutral_pions", "n_photons", "n_leptons",
                        "n_neutrinos", "e_visible", "e_invisible", "e_charged_hadrons", "e_neutral_hadrons",
                        "e_photons", "e_leptons", "e_calorimeter_expected"})
    t[k] = 0.0;
  for (int i = 0; i < n; ++i) {
    const int id = static_cast<int>(fs.pdg[i]), a = std::abs(id);
    const double e = fs.p4[4 * i];
    const char* kind;
    if (a == 12 || a == 14 || a == 16) kind = "neutrinos";
    else if (a == 22) kind = "photons";
    else if (a == 11 || a == 13 || a == 15) kind = "leptons";
    else if (pythia.particleData.chargeType(id) != 0) kind = "charged_hadrons";
    else kind = "neutral_hadrons";
    t[std::string("n_") + kind] += 1;
    t[std::string("e_") + (std::strcmp(kind, "neutrinos") ? kind : "invisible")] += e;
    if (std::strcmp(kind, "neutrinos")) t["e_visible"] += e;
    if (auto s = calorimeter::showering(id, fs.p4[4 * i + 1], fs.p4[4 * i + 2], fs.p4[4 * i + 3]))
      t["e_calorimeter_expected"] += s->sampling_fraction * e;
  }
  t.erase("e_neutrinos");
  const int tau = tau_index(pythia.event);
  if (tau >= 0)
    for (int d : pythia.event[tau].daughterList()) t["n_neutral_pions"] += pythia.event[d].id() == 111;
  t["n_charged"] = t["n_charged_hadrons"] + t["n_leptons"];
  t["e_tau"] = std::sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2] + TAU_MASS * TAU_MASS);

  controller.tag("tau_channel", "channel", channel);
  controller.tag("tau_random_numbers", "random_numbers", static_cast<double>(random_numbers));
  controller.tag("tau_final_state", "final_state_pdg", fs.pdg, {n});
  controller.tag("tau_final_state", "final_state_p4", fs.p4, {n, 4});
  for (const auto& kv : t) controller.tag("tau_summary", kv.first.c_str(), kv.second);

  // The deposit counts, with the deposits marginalised out: independent Poisson per voxel. The
  // counts themselves (and so the toy's e_calorimeter tag) are the engine's, not ours.
  std::vector<double> rates = calorimeter::expected_counts(fs.pdg, fs.p4);
  for (double& r : rates) r += background;
  const std::vector<int32_t> shape{calorimeter::NX, calorimeter::NY, calorimeter::NZ};
  controller.observe_poisson("calorimeter", "calorimeter", rates, shape);
  controller.result(rates, shape);
}

}  // namespace tau
