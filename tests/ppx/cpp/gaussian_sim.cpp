// A PPX 1.0.0 simulator in C++, as existing front ends write them: it binds a ZeroMQ REP socket
// and runs the Gaussian-with-unknown-mean model whenever an engine sends Run.
//   mu ~ Normal(1, sqrt 5); observe obs0, obs1 ~ Normal(mu, sqrt 2) (values supplied by name)
// Base addresses imitate a native call stack (long, as a C++ front end builds them).
// Every buffer it receives must pass flatbuffers::Verifier (alignment checks included); on a
// failure it prints the reason and exits with status 2.
//
// Build: flatc --cpp -o BUILD ppx.fbs && g++ -O2 -std=c++17 -I BUILD gaussian_sim.cpp -lzmq
// Run:   gaussian_sim ADDRESS [MAX_TRACES]

#include <zmq.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ppx_generated.h"

namespace {

void* g_socket = nullptr;

std::string frames(const char* leaf) {
  // [frame; frame; ...] with function+offset entries, like a backtrace-derived address.
  std::string a = "[";
  a += leaf;
  a += "; gaussian_model::forward(ppx::Context&)+0x1f4";
  a += "; ppx::Simulator::run_trace(std::function<void ()> const&)+0x9c";
  a += "; ppx::Simulator::serve(std::__cxx11::basic_string<char> const&)+0x2e1";
  a += "; main+0x8d; __libc_start_call_main+0x7a; __libc_start_main+0x85; _start+0x25]";
  return a;
}

void fail(const char* what) {
  std::fprintf(stderr, "gaussian_sim: %s\n", what);
  std::exit(2);
}

std::vector<uint8_t> receive() {
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  if (zmq_msg_recv(&msg, g_socket, 0) < 0) fail("zmq_msg_recv failed");
  const uint8_t* data = static_cast<const uint8_t*>(zmq_msg_data(&msg));
  std::vector<uint8_t> buf(data, data + zmq_msg_size(&msg));
  zmq_msg_close(&msg);
  flatbuffers::Verifier verifier(buf.data(), buf.size());
  // Existing peers write no file identifier: verify without requiring it.
  if (!verifier.VerifyBuffer<ppx::Message>(nullptr)) fail("received a buffer that fails verification");
  return buf;
}

void send(flatbuffers::FlatBufferBuilder& b, ppx::MessageBody type, flatbuffers::Offset<void> body) {
  b.Finish(ppx::CreateMessage(b, type, body));  // no file identifier, like other PPX peers
  if (zmq_send(g_socket, b.GetBufferPointer(), b.GetSize(), 0) < 0) fail("zmq_send failed");
}

flatbuffers::Offset<ppx::Tensor> scalar(flatbuffers::FlatBufferBuilder& b, double v) {
  std::vector<double> data{v};
  std::vector<int32_t> shape;
  return ppx::CreateTensorDirect(b, &data, &shape);
}

flatbuffers::Offset<ppx::Tensor> empty(flatbuffers::FlatBufferBuilder& b) {
  std::vector<double> data;
  std::vector<int32_t> shape;
  return ppx::CreateTensorDirect(b, &data, &shape);
}

void reset() {
  flatbuffers::FlatBufferBuilder b;
  send(b, ppx::MessageBody_Reset, ppx::CreateReset(b).Union());
}

// Returns false when the engine broke off the trace (we answered Reset).
bool expect(const std::vector<uint8_t>& buf, ppx::MessageBody type) {
  if (ppx::GetMessage(buf.data())->body_type() != type) {
    reset();
    return false;
  }
  return true;
}

bool sample_normal(const std::string& address, const char* name, double mean, double stddev, double* out) {
  flatbuffers::FlatBufferBuilder b;
  auto m = scalar(b, mean);
  auto s = scalar(b, stddev);
  auto dist = ppx::CreateNormal(b, m, s);
  auto body = ppx::CreateSampleDirect(b, address.c_str(), name, ppx::Distribution_Normal, dist.Union(), true);
  send(b, ppx::MessageBody_Sample, body.Union());
  auto reply = receive();
  if (!expect(reply, ppx::MessageBody_SampleResult)) return false;
  auto result = ppx::GetMessage(reply.data())->body_as_SampleResult()->result();
  if (result == nullptr || result->data() == nullptr || result->data()->size() != 1) fail("SampleResult is not a scalar");
  *out = result->data()->Get(0);
  return true;
}

bool observe_normal(const std::string& address, const char* name, double mean, double stddev) {
  flatbuffers::FlatBufferBuilder b;
  auto m = scalar(b, mean);
  auto s = scalar(b, stddev);
  auto dist = ppx::CreateNormal(b, m, s);
  auto value = empty(b);  // the engine supplies the observed value by name
  auto body = ppx::CreateObserveDirect(b, address.c_str(), name, ppx::Distribution_Normal, dist.Union(), value);
  send(b, ppx::MessageBody_Observe, body.Union());
  return expect(receive(), ppx::MessageBody_ObserveResult);
}

bool tag(const std::string& address, const char* name, double v) {
  flatbuffers::FlatBufferBuilder b;
  auto value = scalar(b, v);
  auto body = ppx::CreateTagDirect(b, address.c_str(), name, value);
  send(b, ppx::MessageBody_Tag, body.Union());
  return expect(receive(), ppx::MessageBody_TagResult);
}

void run_trace() {
  double mu = 0.0;
  if (!sample_normal(frames("ppx::sample(ppx::Normal const&, char const*)+0x3a"), "mu", 1.0, std::sqrt(5.0), &mu)) return;
  for (int i = 0; i < 2; ++i) {
    // One call site, two observations: the engine's instance counter tells them apart.
    std::string name = "obs" + std::to_string(i);
    if (!observe_normal(frames("ppx::observe(ppx::Normal const&, char const*)+0x41"), name.c_str(), mu, std::sqrt(2.0))) return;
  }
  if (!tag(frames("ppx::tag(double, char const*)+0x22"), "mu_tag", mu)) return;
  flatbuffers::FlatBufferBuilder b;
  auto result = scalar(b, mu);
  send(b, ppx::MessageBody_RunResult, ppx::CreateRunResult(b, result).Union());
}

}  // namespace

int main(int argc, char** argv) {
  const char* address = argc > 1 ? argv[1] : "tcp://*:5555";
  long max_traces = argc > 2 ? std::atol(argv[2]) : -1;
  void* context = zmq_ctx_new();
  g_socket = zmq_socket(context, ZMQ_REP);
  if (zmq_bind(g_socket, address) != 0) fail("cannot bind");
  long traces = 0;
  while (max_traces < 0 || traces < max_traces) {
    auto request = receive();
    auto message = ppx::GetMessage(request.data());
    switch (message->body_type()) {
      case ppx::MessageBody_Handshake: {
        flatbuffers::FlatBufferBuilder b;
        auto body = ppx::CreateHandshakeResultDirect(b, "ppx C++ test simulator", "gaussian_cpp");
        send(b, ppx::MessageBody_HandshakeResult, body.Union());
        break;
      }
      case ppx::MessageBody_Run:
        run_trace();
        ++traces;
        break;
      default:
        reset();
    }
  }
  int linger = 1000;
  zmq_setsockopt(g_socket, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(g_socket);
  zmq_ctx_term(context);
  return 0;
}
