// Pythia 8 tau decays under the control of a PPX engine, with no change to Pythia's sources.
//
// Every random number Pythia draws goes through Pythia8::RndmEngine::flat(); the trace
// (tau_trace.h, shared with the in-process library) turns each call into a Sample of
// Uniform(0, 1) whose address is the native call stack at that point (Pythia8:: frames,
// outermost first, "function+offset", ';'-separated). Here every message of the trace is a PPX
// message over a ZeroMQ REP socket.
//
// Usage:
//   pythia8_tau_ppx [--xmldoc DIR] [--set "Key = value"]... [--background B] ADDRESS
//                                                                         serve PPX (REP, binds)
//   pythia8_tau_ppx [--xmldoc DIR] --standalone N --seed S [--addressed]   Pythia alone (JSON)
//   pythia8_tau_ppx [--xmldoc DIR] --list-channels                         the decay table (JSON)
// ADDRESS defaults to $ETALUMIS_PPX_ADDRESS. The process exits when the engine whose pid is in
// $ETALUMIS_PPX_ENGINE_PID is gone (no orphans).

#include <signal.h>
#include <zmq.h>

#include <cerrno>
#include <chrono>

#include "ppx_generated.h"
#include "tau_trace.h"

namespace {

using namespace tau;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "pythia8_tau_ppx: %s\n", what.c_str());
  std::exit(2);
}

// -- PPX: one REP socket, one message at a time --------------------------------------------------

struct Broken {};  // the engine sent something out of step: we answered Reset, the trace ends

class Channel : public Controller {
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

  double uniform(const std::string& address, const char* name, double low, double high) override {
    auto lo = scalar(low), hi = scalar(high);
    return sample(address, name, ppx::Distribution_Uniform, ppx::CreateUniform(builder_, lo, hi).Union());
  }

  using Controller::tag;
  void tag(const std::string& address, const char* name, const std::vector<double>& value,
           const std::vector<int32_t>& shape) override {
    auto v = tensor(value.data(), value.size(), shape);
    auto a = builder_.CreateString(address);
    auto n = builder_.CreateString(name);
    send(ppx::MessageBody_Tag, ppx::CreateTag(builder_, a, n, v).Union());
    expect(ppx::MessageBody_TagResult);
  }

  void observe_poisson(const std::string& address, const char* name, const std::vector<double>& rates,
                       const std::vector<int32_t>& shape) override {
    auto r = tensor(rates.data(), rates.size(), shape);
    auto dist = ppx::CreatePoisson(builder_, r);
    auto value = tensor(nullptr, 0, {});  // empty: the engine supplies it by name
    auto a = builder_.CreateString(address);
    auto n = builder_.CreateString(name);
    send(ppx::MessageBody_Observe,
         ppx::CreateObserve(builder_, a, n, ppx::Distribution_Poisson, dist.Union(), value).Union());
    expect(ppx::MessageBody_ObserveResult);
  }

  void result(const std::vector<double>& value, const std::vector<int32_t>& shape) override {
    auto r = tensor(value.data(), value.size(), shape);
    send(ppx::MessageBody_RunResult, ppx::CreateRunResult(builder_, r).Union());
  }

 private:
  void* context_ = nullptr;
  void* socket_ = nullptr;
  int engine_pid_ = 0;
  std::vector<uint8_t> buffer_;
  flatbuffers::FlatBufferBuilder builder_{1 << 16};
};

int serve(const Setup& setup, const std::string& address) {
  Channel ppx(address);
  auto engine = std::make_shared<ControlledRndmEngine>();
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
  auto engine = addressed ? std::make_shared<ControlledRndmEngine>(seed) : nullptr;
  auto pythia = make_pythia(setup, engine, seed);
  if (engine) engine->begin_trace(nullptr);
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
  if (!channels && standalone_count < 0 && address.empty())
    fail("no PPX address: pass one or set ETALUMIS_PPX_ADDRESS");
  try {
    if (channels) return list_channels(setup);
    if (standalone_count >= 0) return standalone(setup, standalone_count, seed, addressed);
    return serve(setup, address);
  } catch (const SetupError& e) {
    fail(e.what());
  }
}
