// A PPX 1.0.0 simulator that behaves like a PPX-enabled Sherpa at the protocol level:
//  * base addresses are synthesised native call stacks, innermost frame first, hundreds of
//    characters long, some of them depending on the decay channel (so that a run meets new
//    addresses as rare channels turn up);
//  * every trace starts with three uniform draws px, py, pz (the tau momentum), then one
//    38-way categorical (the decay channel, HADRONS++ branching ratios), an accept/reject loop
//    (uniform draws until one is accepted, repeat probability 0.4), decay kinematics, a
//    deterministic 35 x 35 x 20 calorimeter response, tags, and one Observe of the
//    calorimeter under a per-voxel Normal;
//  * like a native front end it sends no names for its random choices (only for the observe
//    and the tags), and returns the calorimeter as the RunResult.
//
// Build: flatc --cpp -o BUILD ppx.fbs && g++ -O2 -std=c++17 -I BUILD sherpa_like.cpp -lzmq
// Run:   sherpa_like [-f RUN_CARD] [--sigma0 S] ADDRESS      (or ETALUMIS_PPX_ADDRESS)
//        sherpa_like --list-addresses                        (every base address it can send)
// Run card lines: "KEY = VALUE" or "KEY: VALUE"; keys SIGMA0 (likelihood noise floor, GeV),
// MODEL_NAME. The environment variable SHERPA_LIKE_BANNER, when set, is printed at start-up
// (tests use it to check that the adapter passes the environment).

#include <zmq.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "ppx_generated.h"

namespace {

void* g_socket = nullptr;
double g_sigma0 = 0.005;
std::string g_model_name = "sherpa_like";
bool g_list = false;
std::set<std::string> g_listed;

constexpr int NX = 35, NY = 35, NZ = 20;
constexpr double X0 = -3.0, X1 = 3.0, Z0 = 4.0, Z1 = 15.0;

// The 38 tau- decay channels: branching ratio, visible products (besides nu_tau):
// e electron, m muon, h charged hadron, n neutral hadron (K_S/K_L), 0 pi0, E eta.
struct Channel {
  double br;
  const char* products;
};
const Channel CHANNELS[38] = {
    {0.1784, "e"},   {0.1736, "m"},    {0.1106, "h"},     {0.00686, "h"},    {0.2542, "h0"},
    {0.00077, "hn"}, {0.00077, "hn"},  {0.00445, "hn"},   {0.00445, "hn"},   {0.0045, "h0"},
    {0.0917, "h00"}, {0.0916, "hhh"},  {0.00185, "hn0"},  {0.00185, "hn0"},  {0.0033, "hhh"},
    {0.00058, "h00"}, {0.00155, "hhh"}, {0.000755, "hn0"}, {0.000755, "hn0"}, {0.00055, "hnn"},
    {0.00024, "hnn"}, {0.00024, "hnn"}, {3.7e-5, "hhh"},   {0.0425, "hhh0"},  {0.0108, "h000"},
    {0.00038, "h000"}, {0.000312, "nh00"}, {0.000312, "nh00"}, {0.00042, "hhh0"}, {0.00013, "hE"},
    {0.00027, "hE"},  {0.0001, "hEE"},  {0.00174, "Eh0"},  {0.0055, "hhh00"}, {0.00095, "h0000"},
    {0.00005, "h0000"}, {0.002748, "hhh000"}, {0.000181, "hhhhh0"}};

void fail(const char* what) {
  std::fprintf(stderr, "sherpa_like: %s\n", what);
  std::exit(2);
}

// -- addresses: native-stack strings -------------------------------------------------------

const char* OUTER =
    "; HADRONS::Hadron_Decay_Handler::TreatInitialBlob(ATOOLS::Blob*, METOOLS::Amplitude2_Tensor*, "
    "std::vector<ATOOLS::Particle*, std::allocator<ATOOLS::Particle*> > const&)+0x2c1"
    "; SHERPA::Decay_Handler_Base::Treat(ATOOLS::Blob_List*)+0x3d4"
    "; SHERPA::Hadron_Decays::Treat(ATOOLS::Blob_List*)+0x112"
    "; SHERPA::Event_Handler::IterateEventPhases(SHERPA::eventtype::code&)+0x1e6"
    "; SHERPA::Event_Handler::GenerateEvent(SHERPA::eventtype::code)+0x9b"
    "; SHERPA::Sherpa::GenerateOneEvent(bool)+0x1a3"
    "; main+0x8d; __libc_start_main+0xf0; _start+0x2a]";

std::string frames(const char* front_end, const std::string& inner) {
  // Innermost first, like backtrace(): the PPX front end, the Sherpa code, the event loop.
  std::string a = "[";
  a += front_end;
  a += "; ";
  a += inner;
  a += OUTER;
  if (g_list) g_listed.insert(a);
  return a;
}

const char* ME_CLASS[7] = {"", "HADRONS::Tau_Pseudo", "HADRONS::Tau_Two_Pion",
                           "HADRONS::Tau_Three_Pseudo", "HADRONS::Tau_Four_Pion_3",
                           "HADRONS::Tau_Five_Pion", "HADRONS::Tau_Six_Pion"};

std::string hex(int v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

// A frame chain inside the decay channel's matrix element (differs per channel).
std::string channel_frames(int channel, const std::string& leaf) {
  std::string me = channel < 2 ? "HADRONS::Tau_Lepton" : ME_CLASS[std::strlen(CHANNELS[channel].products)];
  return leaf + "; " + me + "::Calculate(ATOOLS::Vec4<double> const*, bool)+" + hex(0x40 + 8 * channel) +
         "; HADRONS::Hadron_Decay_Channel::GenerateKinematics(ATOOLS::Vec4<double>*, bool, int)+" +
         hex(0x100 + 4 * channel);
}

const char* SAMPLE_UNIFORM = "ppx::sample(ppx::Uniform const&, char const*)+0x3a";
const char* SAMPLE_NORMAL = "ppx::sample(ppx::Normal const&, char const*)+0x3a";
const char* SAMPLE_CATEGORICAL = "ppx::sample(ppx::Categorical const&, char const*)+0x3a";
const char* OBSERVE_NORMAL = "ppx::observe(ppx::Normal const&, char const*)+0x41";
const char* TAG = "ppx::tag(ATOOLS::Tensor const&, char const*)+0x22";

std::string momentum_address(int k) {
  return frames(SAMPLE_UNIFORM, "SHERPA::Tau_Gun::GenerateMomentum(ATOOLS::Vec4<double>&)+" + hex(0x5c + 0x24 * k) +
                                    "; SHERPA::Tau_Gun::InitialiseEvent()+0x77");
}
std::string channel_address() {
  return frames(SAMPLE_CATEGORICAL,
                "HADRONS::Hadron_Decay_Table::Select() const+0x7c; HADRONS::Hadron_Decay_Handler::ChooseDecay("
                "ATOOLS::Particle*)+0x55");
}
std::string rambo_address(int channel) {
  return frames(SAMPLE_UNIFORM, channel_frames(channel, "PHASIC::Rambo::GenerateWeight(ATOOLS::Vec4<double>*, "
                                                        "PHASIC::Cut_Data*)+0x1a3"));
}
std::string fraction_address(int channel) {
  return frames(SAMPLE_UNIFORM, channel_frames(channel, "HADRONS::Tau_Decay_MEs::VisibleFraction(double)+0x2e"));
}
std::string share_address(int channel) {
  return frames(SAMPLE_UNIFORM, channel_frames(channel, "PHASIC::Rambo::GeneratePoint(ATOOLS::Vec4<double>*, "
                                                        "PHASIC::Cut_Data*)+0x9f"));
}
std::string angle_address(int channel) {
  return frames(SAMPLE_NORMAL, channel_frames(channel, "ATOOLS::ran::GetGaussian()+0x31"));
}
std::string observe_address() {
  return frames(OBSERVE_NORMAL, "SHERPA::Calorimeter::Observe(ATOOLS::Blob_List const*)+0x6b");
}
std::string tag_address() {
  return frames(TAG, "SHERPA::Tau_Analysis::Tag(ATOOLS::Blob_List const*)+0x48");
}

// -- messages ------------------------------------------------------------------------------

std::vector<uint8_t> receive() {
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  if (zmq_msg_recv(&msg, g_socket, 0) < 0) fail("zmq_msg_recv failed");
  const uint8_t* data = static_cast<const uint8_t*>(zmq_msg_data(&msg));
  std::vector<uint8_t> buf(data, data + zmq_msg_size(&msg));
  zmq_msg_close(&msg);
  flatbuffers::Verifier verifier(buf.data(), buf.size());
  if (!verifier.VerifyBuffer<ppx::Message>(nullptr)) fail("received a buffer that fails verification");
  return buf;
}

void send(flatbuffers::FlatBufferBuilder& b, ppx::MessageBody type, flatbuffers::Offset<void> body) {
  b.Finish(ppx::CreateMessage(b, type, body));
  if (zmq_send(g_socket, b.GetBufferPointer(), b.GetSize(), 0) < 0) fail("zmq_send failed");
}

flatbuffers::Offset<ppx::Tensor> tensor(flatbuffers::FlatBufferBuilder& b, const std::vector<double>& data,
                                        const std::vector<int32_t>& shape) {
  return ppx::CreateTensorDirect(b, &data, &shape);
}

flatbuffers::Offset<ppx::Tensor> scalar(flatbuffers::FlatBufferBuilder& b, double v) {
  return tensor(b, std::vector<double>{v}, {});
}

void reset() {
  flatbuffers::FlatBufferBuilder b;
  send(b, ppx::MessageBody_Reset, ppx::CreateReset(b).Union());
}

struct Broken {};  // the engine broke off the trace (we answered Reset)

void expect(const std::vector<uint8_t>& buf, ppx::MessageBody type) {
  if (ppx::GetMessage(buf.data())->body_type() != type) {
    reset();
    throw Broken();
  }
}

double sample_result(flatbuffers::FlatBufferBuilder& b, ppx::Distribution type, flatbuffers::Offset<void> dist,
                     const std::string& address) {
  // No name: native front ends do not name their random choices.
  auto body = ppx::CreateSampleDirect(b, address.c_str(), "", type, dist, true);
  send(b, ppx::MessageBody_Sample, body.Union());
  auto reply = receive();
  expect(reply, ppx::MessageBody_SampleResult);
  auto result = ppx::GetMessage(reply.data())->body_as_SampleResult()->result();
  if (result == nullptr || result->data() == nullptr || result->data()->size() != 1) fail("SampleResult is not a scalar");
  return result->data()->Get(0);
}

double uniform(const std::string& address, double low, double high) {
  if (g_list) return 0.5 * (low + high);
  flatbuffers::FlatBufferBuilder b;
  auto lo = scalar(b, low);
  auto hi = scalar(b, high);
  return sample_result(b, ppx::Distribution_Uniform, ppx::CreateUniform(b, lo, hi).Union(), address);
}

double normal(const std::string& address, double mean, double stddev) {
  if (g_list) return mean;
  flatbuffers::FlatBufferBuilder b;
  auto m = scalar(b, mean);
  auto s = scalar(b, stddev);
  return sample_result(b, ppx::Distribution_Normal, ppx::CreateNormal(b, m, s).Union(), address);
}

int categorical(const std::string& address, const std::vector<double>& probs) {
  if (g_list) return 0;
  flatbuffers::FlatBufferBuilder b;
  auto p = tensor(b, probs, {static_cast<int32_t>(probs.size())});
  return static_cast<int>(sample_result(b, ppx::Distribution_Categorical, ppx::CreateCategorical(b, p).Union(), address));
}

void tag(const std::string& address, const char* name, double v) {
  if (g_list) return;
  flatbuffers::FlatBufferBuilder b;
  auto value = scalar(b, v);
  auto body = ppx::CreateTagDirect(b, address.c_str(), name, value);
  send(b, ppx::MessageBody_Tag, body.Union());
  expect(receive(), ppx::MessageBody_TagResult);
}

void observe_calorimeter(const std::string& address, const std::vector<double>& mean) {
  if (g_list) return;
  flatbuffers::FlatBufferBuilder b(8 * 2 * mean.size() + 4096);
  std::vector<double> stddev(mean.size());
  for (size_t i = 0; i < mean.size(); ++i) stddev[i] = std::sqrt(0.005 * mean[i] + g_sigma0 * g_sigma0);
  std::vector<int32_t> shape{NX, NY, NZ};
  auto m = tensor(b, mean, shape);
  auto s = tensor(b, stddev, shape);
  auto dist = ppx::CreateNormal(b, m, s);
  auto value = tensor(b, {}, {});  // empty: the engine supplies the observed value by name
  auto body = ppx::CreateObserveDirect(b, address.c_str(), "calorimeter", ppx::Distribution_Normal, dist.Union(), value);
  send(b, ppx::MessageBody_Observe, body.Union());
  expect(receive(), ppx::MessageBody_ObserveResult);
}

// -- the event -----------------------------------------------------------------------------

// Fraction of a Gaussian N(centre, sigma) inside each of n bins of [lo, hi].
std::vector<double> bin_fractions(double centre, double sigma, double lo, double hi, int n) {
  std::vector<double> out(n);
  double w = (hi - lo) / n;
  for (int i = 0; i < n; ++i) {
    double a = (lo + i * w - centre) / (sigma * std::sqrt(2.0));
    double c = (lo + (i + 1) * w - centre) / (sigma * std::sqrt(2.0));
    out[i] = 0.5 * (std::erf(c) - std::erf(a));
  }
  return out;
}

// Expected deposits of one particle (public approximate calorimeter, "variance" reading of
// the shower shapes; the shower centre is half a shower depth behind the front face).
void deposit(std::vector<double>& cal, char type, double energy, double sx, double sy) {
  double fraction, var_z;
  if (type == 'e' || type == '0' || type == 'E') {
    fraction = 0.5;
    var_z = 0.5;
  } else if (type == 'h' || type == 'n') {
    fraction = 0.25;
    var_z = 1.0;
  } else {
    return;  // muons (and neutrinos) deposit nothing
  }
  double sigma_xy = std::sqrt(0.2), sigma_z = std::sqrt(var_z);
  double zc = Z0 + 5.0 * sigma_z;
  auto fx = bin_fractions(zc * sx, sigma_xy, X0, X1, NX);
  auto fy = bin_fractions(zc * sy, sigma_xy, X0, X1, NY);
  auto fz = bin_fractions(zc, sigma_z, Z0, Z1, NZ);
  double e = energy * fraction;
  for (int i = 0; i < NX; ++i)
    for (int j = 0; j < NY; ++j) {
      double eij = e * fx[i] * fy[j];
      if (eij < 1e-12) continue;
      for (int k = 0; k < NZ; ++k) cal[(i * NY + j) * NZ + k] += eij * fz[k];
    }
}

void run_trace() {
  double p[3];
  const double lows[3] = {-3.0, -3.0, 43.0}, highs[3] = {3.0, 3.0, 47.0};
  for (int k = 0; k < 3; ++k) p[k] = uniform(momentum_address(k), lows[k], highs[k]);
  std::vector<double> probs(38);
  for (int c = 0; c < 38; ++c) probs[c] = CHANNELS[c].br;
  int channels_to_visit = g_list ? 38 : 1;
  for (int visit = 0; visit < channels_to_visit; ++visit) {
    int channel = g_list ? (channel_address(), visit) : categorical(channel_address(), probs);
    if (channel < 0 || channel >= 38) fail("channel out of range");
    const char* products = CHANNELS[channel].products;
    int n = static_cast<int>(std::strlen(products));
    // Phase-space generation: draw until accepted (repeats with probability 0.4).
    std::string rambo = rambo_address(channel);
    while (uniform(rambo, 0.0, 1.0) > 0.6 && !g_list) {
    }
    double x_vis = uniform(fraction_address(channel), 0.1, 1.0);
    std::vector<double> share(n, 1.0);
    double total = n == 1 ? 1.0 : 0.0;
    if (n > 1)
      for (int i = 0; i < n; ++i) total += share[i] = uniform(share_address(channel), 0.1, 1.0);
    double e_tau = std::sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2] + 1.77686 * 1.77686);
    std::vector<double> cal(NX * NY * NZ, 0.0);
    int n_ch = 0, n_neu = 0, n_pi0 = 0, n_lep = 0;
    for (int i = 0; i < n; ++i) {
      double dx = normal(angle_address(channel), 0.0, 0.01);
      double dy = normal(angle_address(channel), 0.0, 0.01);
      char t = products[i];
      deposit(cal, t, x_vis * e_tau * share[i] / total, p[0] / p[2] + dx, p[1] / p[2] + dy);
      n_ch += t == 'h';
      n_neu += t == 'n';
      n_pi0 += t == '0';
      n_lep += t == 'e' || t == 'm';
    }
    if (g_list) {
      observe_address();
      tag_address();
      continue;
    }
    double e_cal = 0.0;
    for (double v : cal) e_cal += v;
    std::string ta = tag_address();
    tag(ta, "n_charged_hadrons", n_ch);
    tag(ta, "n_neutral_hadrons", n_neu);
    tag(ta, "n_neutral_pions", n_pi0);
    tag(ta, "n_leptons", n_lep);
    tag(ta, "n_neutrinos", n_lep ? 2 : 1);
    tag(ta, "e_tau", e_tau);
    tag(ta, "visible_energy", x_vis * e_tau);  // Sherpa-side name of the analysis's e_visible
    tag(ta, "e_calorimeter", e_cal);
    observe_calorimeter(observe_address(), cal);
    flatbuffers::FlatBufferBuilder b(8 * cal.size() + 1024);
    auto result = tensor(b, cal, {NX, NY, NZ});
    send(b, ppx::MessageBody_RunResult, ppx::CreateRunResult(b, result).Union());
  }
}

void read_run_card(const char* path) {
  std::ifstream in(path);
  if (!in) fail("cannot read the run card");
  std::string line;
  while (std::getline(in, line)) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    auto sep = line.find_first_of("=:");
    if (sep == std::string::npos) continue;
    auto trim = [](std::string s) {
      size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t\r");
      return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
    };
    std::string key = trim(line.substr(0, sep)), value = trim(line.substr(sep + 1));
    if (key == "SIGMA0") g_sigma0 = std::atof(value.c_str());
    if (key == "MODEL_NAME") g_model_name = value;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* address = std::getenv("ETALUMIS_PPX_ADDRESS");
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "-f") && i + 1 < argc) {
      read_run_card(argv[++i]);
    } else if (!std::strcmp(argv[i], "--sigma0") && i + 1 < argc) {
      g_sigma0 = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--list-addresses")) {
      g_list = true;
    } else {
      address = argv[i];
    }
  }
  if (g_list) {
    run_trace();
    for (const auto& a : g_listed) std::printf("%s\n", a.c_str());
    return 0;
  }
  if (const char* banner = std::getenv("SHERPA_LIKE_BANNER")) std::printf("%s\n", banner);
  std::fflush(stdout);
  if (address == nullptr) address = "tcp://*:5555";
  void* context = zmq_ctx_new();
  g_socket = zmq_socket(context, ZMQ_REP);
  if (zmq_bind(g_socket, address) != 0) fail("cannot bind");
  while (true) {
    auto request = receive();
    auto message = ppx::GetMessage(request.data());
    switch (message->body_type()) {
      case ppx::MessageBody_Handshake: {
        flatbuffers::FlatBufferBuilder b;
        auto body = ppx::CreateHandshakeResultDirect(b, "SHERPA-like PPX test simulator", g_model_name.c_str());
        send(b, ppx::MessageBody_HandshakeResult, body.Union());
        break;
      }
      case ppx::MessageBody_Run:
        try {
          run_trace();
        } catch (const Broken&) {
        }
        break;
      default:
        reset();
    }
  }
}
