// Checks PPX buffers with flatbuffers::Verifier (bounds, alignment, nesting) and prints, per
// file given on the command line, "OK <body type>" or "FAIL".
// Build: flatc --cpp -o BUILD ppx.fbs && g++ -std=c++17 -I BUILD verify_buffers.cpp

#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#include "ppx_generated.h"

int main(int argc, char** argv) {
  int failures = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::vector<uint8_t> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    flatbuffers::Verifier verifier(buf.data(), buf.size());
    if (verifier.VerifyBuffer<ppx::Message>(nullptr)) {
      std::printf("OK %s\n", ppx::EnumNameMessageBody(ppx::GetMessage(buf.data())->body_type()));
    } else {
      std::printf("FAIL\n");
      ++failures;
    }
  }
  return failures ? 1 : 0;
}
