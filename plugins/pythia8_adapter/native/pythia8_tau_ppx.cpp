// Pythia 8 tau decays under the control of a PPX engine, with no change to Pythia's sources.
//
// Every random number Pythia draws goes through Pythia8::RndmEngine::flat(); the engine below
// turns each call into a PPX Sample of Uniform(0, 1) whose address is the native call stack at
// that point (Pythia8:: frames, outermost first, "function+offset", ';'-separated). A trace:
//   px ~ U(-3, 3), py ~ U(-3, 3), pz ~ U(43, 47)      named samples (toy_tau_decay's priors)
//   a tau- of that momentum decayed by Pythia          every flat() a Sample
//   tags: the decay channel (index into Pythia's tau decay table), the final state, energies
//   observe "calorimeter" ~ Poisson(rates + background), 35 x 35 x 20 deposit counts: toy_tau_decay's
//     exact likelihood, the expected 5 MeV deposits per voxel (calorimeter.h) plus stray ones
//   RunResult: rates + background.
//
// Usage:
//   pythia8_tau_ppx [--xmldoc DIR] [--set "Key = value"]... [--background B] ADDRESS
//                                                                         serve PPX (REP, binds)
//   pythia8_tau_ppx [--xmldoc DIR] --standalone N --seed S [--addressed]   Pythia alone (JSON)
//   pythia8_tau_ppx [--xmldoc DIR] --list-channels                         the decay table (JSON)
// ADDRESS defaults to $ETALUMIS_PPX_ADDRESS. The process exits when the engine whose pid is in
// $ETALUMIS_PPX_ENGINE_PID is gone (no orphans).

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "Pythia8/Pythia.h"
#include "calorimeter.h"
#include "ppx_generated.h"

namespace {

constexpr double TAU_MASS = 1.77686;
constexpr double LOWS[3] = {-3.0, -3.0, 43.0}, HIGHS[3] = {3.0, 3.0, 47.0};
const char* const MOMENTUM[3] = {"px", "py", "pz"};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "pythia8_tau_ppx: %s\n", what.c_str());
  std::exit(2);
}

// -- PPX: one REP socket, one message at a time --------------------------------------------------

struct Broken {};  // the engine sent something out of step: we answered Reset, the trace ends

class Channel {
 public:
  explicit Channel(const std::string& address) {
    if (const char* pid = std::getenv("ETALUMIS_PPX_ENGINE_PID")) engine_pid_ = std::atoi(pid);
    context_ = zmq_ctx_new();
    socket_ = zmq_socket(context_, ZMQ_REP);
    if (zmq_bind(socket_, address.c_str()) != 0) fail("cannot bind " + address + ": " + zmq_strerror(zmq_errno()));
  }

  const ppx::Message* receive() {
    zmq_pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
    // Wake up every second to see whether the engine that launched us is still there.
    while (zmq_poll(&item, 1, 1000) == 0)
      if (engine_pid_ > 0 && kill(engine_pid_, 0) != 0 && errno == ESRCH) std::exit(0);
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, socket_, 0) < 0) fail("zmq_msg_recv failed");
    const uint8_t* data = static_cast<const uint8_t*>(zmq_msg_data(&msg));
    buffer_.assign(data, data + zmq_msg_size(&msg));
    zmq_msg_close(&msg);
    flatbuffers::Verifier verifier(buffer_.data(), buffer_.size());
    if (!verifier.VerifyBuffer<ppx::Message>(nullptr)) fail("received a buffer that fails verification");
    return ppx::GetMessage(buffer_.data());
  }

  void send(ppx::MessageBody type, flatbuffers::Offset<void> body) {
    builder_.Finish(ppx::CreateMessage(builder_, type, body));  // no file identifier, like other peers
    if (zmq_send(socket_, builder_.GetBufferPointer(), builder_.GetSize(), 0) < 0) fail("zmq_send failed");
    builder_.Clear();
  }

  const ppx::Message* expect(ppx::MessageBody type) {
    const ppx::Message* m = receive();
    if (m->body_type() != type) {
      send(ppx::MessageBody_Reset, ppx::CreateReset(builder_).Union());
      throw Broken();
    }
    return m;
  }

  flatbuffers::FlatBufferBuilder& builder() { return builder_; }

  flatbuffers::Offset<ppx::Tensor> tensor(const double* data, size_t n, std::vector<int32_t> shape) {
    auto d = builder_.CreateVector(data, n);
    auto s = builder_.CreateVector(shape);
    return ppx::CreateTensor(builder_, d, s);
  }
  flatbuffers::Offset<ppx::Tensor> scalar(double v) { return tensor(&v, 1, {}); }

  double sample(const std::string& address, const char* name, ppx::Distribution type,
                flatbuffers::Offset<void> distribution) {
    auto a = builder_.CreateString(address);
    auto n = builder_.CreateString(name);
    send(ppx::MessageBody_Sample, ppx::CreateSample(builder_, a, n, type, distribution, true).Union());
    auto result = expect(ppx::MessageBody_SampleResult)->body_as_SampleResult()->result();
    if (result == nullptr || result->data() == nullptr || result->data()->size() != 1)
      fail("SampleResult is not a scalar");
    return result->data()->Get(0);
  }

  double uniform(const std::string& address, const char* name, double low, double high) {
    auto lo = scalar(low), hi = scalar(high);
    return sample(address, name, ppx::Distribution_Uniform, ppx::CreateUniform(builder_, lo, hi).Union());
  }

  void tag(const std::string& address, const char* name, const std::vector<double>& value,
           std::vector<int32_t> shape) {
    auto v = tensor(value.data(), value.size(), std::move(shape));
    auto a = builder_.CreateString(address);
    auto n = builder_.CreateString(name);
    send(ppx::MessageBody_Tag, ppx::CreateTag(builder_, a, n, v).Union());
    expect(ppx::MessageBody_TagResult);
  }
  void tag(const std::string& address, const char* name, double value) { tag(address, name, {value}, {}); }

 private:
  void* context_ = nullptr;
  void* socket_ = nullptr;
  int engine_pid_ = 0;
  std::vector<uint8_t> buffer_;
  flatbuffers::FlatBufferBuilder builder_{1 << 16};
};

// -- addresses from the native call stack ---------------------------------------------------------

// "Pythia8::TauDecays::decay(int, Pythia8::Event&)" -> "Pythia8::TauDecays::decay"
std::string without_arguments(const std::string& name) {
  int depth = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '<') ++depth;
    if (name[i] == '>') --depth;
    if (name[i] == '(' && depth == 0 && i > 0) return name.substr(0, i);
  }
  return name;
}

// The Pythia8:: frames of a stack (innermost first, as backtrace gives it), outermost first.
std::string stack_address(void* const* frames, int n) {
  std::vector<std::string> kept;
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
  }
  std::string address;
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) address += (address.empty() ? "" : ";") + *it;
  return address.empty() ? "Pythia8" : address;
}

// flat() as a PPX sample. Outside a trace (Pythia's init) it falls back on a fixed-seed
// generator, so that start-up is deterministic and costs the engine nothing. Without a channel
// it addresses every number and draws it locally (the benchmark's "addressing alone").
class PPXRndmEngine : public Pythia8::RndmEngine {
 public:
  explicit PPXRndmEngine(Channel* channel, uint64_t seed = 20260601) : channel_(channel), local_(seed) {}

  double flat() override {
    if (!in_trace_) return std::generate_canonical<double, 53>(local_);
    ++count_;
    void* frames[64];
    const int n = backtrace(frames, 64);
    // Symbolising costs ~0.5 ms; the raw return addresses identify the stack just as well.
    std::string key(reinterpret_cast<const char*>(frames), n * sizeof(void*));
    auto it = addresses_.find(key);
    if (it == addresses_.end()) it = addresses_.emplace(std::move(key), stack_address(frames, n)).first;
    if (channel_ == nullptr) return std::generate_canonical<double, 53>(local_);
    return channel_->uniform(it->second, "", 0.0, 1.0);
  }

  void begin_trace() { in_trace_ = true; count_ = 0; }
  void end_trace() { in_trace_ = false; }
  long count() const { return count_; }

 private:
  Channel* channel_;
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

std::unique_ptr<Pythia8::Pythia> make_pythia(const Setup& setup, std::shared_ptr<Pythia8::RndmEngine> engine,
                                             int seed) {
  auto pythia = std::make_unique<Pythia8::Pythia>(setup.xmldoc, false);
  for (const char* s : {"ProcessLevel:all = off", "TauDecays:mode = 3", "TauDecays:tauPolarization = 0",
                        "Print:quiet = on", "Next:numberCount = 0"})
    pythia->readString(s);
  for (const auto& s : setup.settings)
    if (!pythia->readString(s)) fail("Pythia does not accept the setting '" + s + "'");
  if (engine) {
    pythia->setRndmEnginePtr(engine);
  } else {
    pythia->readString("Random:setSeed = on");
    pythia->readString("Random:seed = " + std::to_string(seed));
  }
  if (!pythia->init()) fail("Pythia's initialisation failed");
  return pythia;
}

void decay_tau(Pythia8::Pythia& pythia, double px, double py, double pz) {
  pythia.event.reset();
  const double e = std::sqrt(px * px + py * py + pz * pz + TAU_MASS * TAU_MASS);
  pythia.event.append(15, 91, 0, 0, px, py, pz, e, TAU_MASS);
  pythia.next();
}

// Index of the tau's decay in Pythia's decay table: the channel whose products are the tau's
// daughters (-1 if none matches).
int tau_index(const Pythia8::Event& event) {
  for (int i = 0; i < event.size(); ++i)
    if (event[i].id() == 15) return i;
  return -1;
}

int decay_channel(Pythia8::Pythia& pythia) {
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

FinalState final_state(const Pythia8::Event& event) {
  FinalState f;
  for (int i = 0; i < event.size(); ++i) {
    const auto& p = event[i];
    if (!p.isFinal()) continue;
    f.pdg.push_back(p.id());
    for (double v : {p.e(), p.px(), p.py(), p.pz()}) f.p4.push_back(v);
  }
  return f;
}

// -- one PPX trace -------------------------------------------------------------------------------

void run_trace(Channel& ppx, Pythia8::Pythia& pythia, PPXRndmEngine& engine, double background) {
  double p[3];
  for (int k = 0; k < 3; ++k) p[k] = ppx.uniform(std::string("tau_") + MOMENTUM[k], MOMENTUM[k], LOWS[k], HIGHS[k]);
  {
    struct InTrace {  // also when the engine breaks off the trace inside Pythia
      PPXRndmEngine& e;
      explicit InTrace(PPXRndmEngine& engine) : e(engine) { e.begin_trace(); }
      ~InTrace() { e.end_trace(); }
    } in_trace(engine);
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

  ppx.tag("tau_channel", "channel", channel);
  ppx.tag("tau_random_numbers", "random_numbers", static_cast<double>(random_numbers));
  ppx.tag("tau_final_state", "final_state_pdg", fs.pdg, {n});
  ppx.tag("tau_final_state", "final_state_p4", fs.p4, {n, 4});
  for (const auto& kv : t) ppx.tag("tau_summary", kv.first.c_str(), kv.second);

  // The deposit counts, with the deposits marginalised out: independent Poisson per voxel. The
  // counts themselves (and so the toy's e_calorimeter tag) are the engine's, not ours.
  std::vector<double> rates = calorimeter::expected_counts(fs.pdg, fs.p4);
  for (double& r : rates) r += background;
  const std::vector<int32_t> shape{calorimeter::NX, calorimeter::NY, calorimeter::NZ};
  {
    auto r = ppx.tensor(rates.data(), rates.size(), shape);
    auto dist = ppx::CreatePoisson(ppx.builder(), r);
    auto value = ppx.tensor(nullptr, 0, {});  // empty: the engine supplies it by name
    auto a = ppx.builder().CreateString("calorimeter");
    auto name = ppx.builder().CreateString("calorimeter");
    ppx.send(ppx::MessageBody_Observe,
             ppx::CreateObserve(ppx.builder(), a, name, ppx::Distribution_Poisson, dist.Union(), value).Union());
    ppx.expect(ppx::MessageBody_ObserveResult);
  }
  auto result = ppx.tensor(rates.data(), rates.size(), shape);
  ppx.send(ppx::MessageBody_RunResult, ppx::CreateRunResult(ppx.builder(), result).Union());
}

int serve(const Setup& setup, const std::string& address) {
  Channel ppx(address);
  auto engine = std::make_shared<PPXRndmEngine>(&ppx);
  auto pythia = make_pythia(setup, engine, 0);
  std::printf("pythia8_tau_ppx: Pythia %.3f ready at %s\n", pythia->settings.parm("Pythia:versionNumber"),
              address.c_str());
  std::fflush(stdout);
  while (true) {
    const ppx::Message* m = ppx.receive();
    switch (m->body_type()) {
      case ppx::MessageBody_Handshake: {
        auto& b = ppx.builder();
        auto body = ppx::CreateHandshakeResultDirect(b, "Pythia 8.318 (pythia8_tau_ppx)", "pythia8_tau");
        ppx.send(ppx::MessageBody_HandshakeResult, body.Union());
        break;
      }
      case ppx::MessageBody_Run:
        try {
          run_trace(ppx, *pythia, *engine, setup.background);
        } catch (const Broken&) {
        }
        break;
      default:
        ppx.send(ppx::MessageBody_Reset, ppx::CreateReset(ppx.builder()).Union());
    }
  }
}

// -- without PPX ---------------------------------------------------------------------------------

// The same decays and calorimeter with Pythia's own random numbers: the baseline of the cost of
// control, and Pythia's own decay-mode fractions.
// With ``addressed``, every random number also has its native-stack address computed (cached),
// as under PPX: the part of the cost of control that is not the protocol.
int standalone(const Setup& setup, long count, int seed, bool addressed) {
  auto engine = addressed ? std::make_shared<PPXRndmEngine>(nullptr, seed) : nullptr;
  auto pythia = make_pythia(setup, engine, seed);
  if (engine) engine->begin_trace();
  std::map<int, long> channels;
  auto start = std::chrono::steady_clock::now();
  double checksum = 0.0;
  for (long i = 0; i < count; ++i) {
    double p[3];
    for (int k = 0; k < 3; ++k) p[k] = LOWS[k] + (HIGHS[k] - LOWS[k]) * pythia->rndm.flat();
    decay_tau(*pythia, p[0], p[1], p[2]);
    ++channels[decay_channel(*pythia)];
    const FinalState fs = final_state(pythia->event);
    for (double r : calorimeter::expected_counts(fs.pdg, fs.p4)) checksum += r * calorimeter::QUANTUM;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"decays\": %ld, \"seed\": %d, \"addressed\": %s, \"seconds\": %.6f, \"energy\": %.6f, "
              "\"channels\": {", count, seed, addressed ? "true" : "false", seconds, checksum);
  bool first = true;
  for (const auto& kv : channels) {
    std::printf("%s\"%d\": %ld", first ? "" : ", ", kv.first, kv.second);
    first = false;
  }
  std::printf("}}\n");
  return 0;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return out + "\"";
}

int list_channels(const Setup& setup) {
  auto pythia = make_pythia(setup, nullptr, 1);
  auto entry = pythia->particleData.particleDataEntryPtr(15);
  std::printf("[");
  for (int c = 0; c < entry->sizeChannels(); ++c) {
    const auto& ch = entry->channel(c);
    std::printf("%s\n {\"index\": %d, \"branching_ratio\": %.10g, \"on\": %d, \"me_mode\": %d, \"products\": [",
                c ? "," : "", c, ch.bRatio(), ch.onMode(), ch.meMode());
    std::string names;
    for (int j = 0; j < ch.multiplicity(); ++j) {
      std::printf("%s%d", j ? ", " : "", ch.product(j));
      names += (j ? " " : "") + pythia->particleData.name(ch.product(j));
    }
    std::printf("], \"name\": %s}", json_string(names).c_str());
  }
  std::printf("\n]\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Setup setup;
  const char* env_address = std::getenv("ETALUMIS_PPX_ADDRESS");
  std::string address = env_address ? env_address : "";
  long standalone_count = -1;
  int seed = 1;
  bool channels = false, addressed = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--xmldoc") setup.xmldoc = value();
    else if (a == "--set") setup.settings.push_back(value());
    else if (a == "--background") {
      const std::string v = value();
      char* end = nullptr;
      setup.background = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !(setup.background > 0.0))
        fail("--background needs a positive number (mean stray deposits per voxel), got '" + v + "'");
    }
    else if (a == "--standalone") standalone_count = std::atol(value().c_str());
    else if (a == "--seed") seed = std::atoi(value().c_str());
    else if (a == "--addressed") addressed = true;
    else if (a == "--list-channels") channels = true;
    else if (!a.empty() && a[0] == '-') fail("unknown option " + a);
    else address = a;
  }
  if (setup.xmldoc.empty()) {
    const char* data = std::getenv("PYTHIA8DATA");
#ifdef XMLDIR
    setup.xmldoc = data ? data : XMLDIR;
#else
    if (!data) fail("where is Pythia's xmldoc? pass --xmldoc DIR or set PYTHIA8DATA");
    setup.xmldoc = data;
#endif
  }
  if (channels) return list_channels(setup);
  if (standalone_count >= 0) return standalone(setup, standalone_count, seed, addressed);
  if (address.empty()) fail("no PPX address: pass one or set ETALUMIS_PPX_ADDRESS");
  return serve(setup, address);
}
