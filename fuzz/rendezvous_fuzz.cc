// The beacon's reading of a preamble and a side's reading of the beacon's
// answers (shared/wire/rendezvous.h, docs/beacon.md §2): bytes from the
// network, read before anyone is authenticated to anything but the outer TLS.
//
// Input: one byte (bit 0: 0 preamble, 1 answers; bits 1-4: the largest piece
// fed at a time, 1..16, 0: as much as the reader wants), then the bytes.
// Oracle:
//  - fed in pieces of at most wanted(), the reader decides what it decides
//    when fed everything at once (state, and the preamble or answer);
//  - it never takes more than one message: a preamble of at most
//    kMaxPreamble bytes, an answer of at most kAnswerFixed + kMaxReason;
//  - what it accepts re-encodes to exactly the bytes it took, and an
//    accepted preamble passes preamble_problem().
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_input.h"
#include "shared/wire/rendezvous.h"

namespace {

using namespace ct;
using namespace ct::rdv;

// Feeds `in` in pieces; returns how many bytes the reader took.
template <typename Reader>
size_t feed_pieces(Reader& r, Bytes in, size_t step) {
  size_t off = 0;
  while (off < in.size() && r.state() == Reader::State::kMore) {
    const size_t want = r.wanted();
    FZ_CHECK(want > 0, "undecided but wants nothing");
    const size_t n = std::min({step == 0 ? want : step, want, in.size() - off});
    r.feed(in.subspan(off, n));
    off += n;
  }
  return off;
}

void preamble(Bytes in, size_t step) {
  PreambleReader pieces;
  const size_t took = feed_pieces(pieces, in, step);
  FZ_CHECK(took <= kMaxPreamble, "took %zu bytes for one preamble", took);
  PreambleReader whole;
  whole.feed(in.first(took));
  FZ_CHECK(whole.state() == pieces.state(), "pieces %d, whole %d", static_cast<int>(pieces.state()),
           static_cast<int>(whole.state()));
  if (pieces.state() != PreambleReader::State::kDone) return;
  const Preamble& p = pieces.preamble();
  FZ_CHECK(preamble_problem(p).empty(), "accepted: %s", preamble_problem(p).c_str());
  const auto again = encode_preamble(p);
  FZ_CHECK(std::equal(again.begin(), again.end(), in.begin(),
                      in.begin() + static_cast<std::ptrdiff_t>(took)) &&
               again.size() == took,
           "re-encodes to %zu other bytes", again.size());
  FZ_CHECK(whole.preamble().instances == p.instances && whole.preamble().id == p.id,
           "pieces and whole read different preambles");
  if (took < in.size()) {
    const uint8_t extra = in[took];
    FZ_CHECK(pieces.feed(Bytes(&extra, 1)) == PreambleReader::State::kBad,
             "a byte after the preamble accepted");
  }
}

void answers(Bytes in, size_t step) {
  AnswerReader r;
  size_t off = 0;
  for (int i = 0; i < 64 && off < in.size(); i++) {
    const size_t took = feed_pieces(r, in.subspan(off), step);
    FZ_CHECK(took <= kAnswerFixed + kMaxReason, "took %zu bytes for one answer", took);
    AnswerReader whole;
    whole.feed(in.subspan(off, took));
    FZ_CHECK(whole.state() == r.state(), "pieces and whole disagree");
    if (r.state() != AnswerReader::State::kDone) return;
    const auto again = encode_answer(r.answer(), r.reason());
    FZ_CHECK(again.size() == took && std::equal(again.begin(), again.end(),
                                                in.begin() + static_cast<std::ptrdiff_t>(off)),
             "answer %s re-encodes to other bytes", answer_name(r.answer()));
    off += took;
    r.next();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = (data[0] >> 1) & 0x0f;
  const Bytes in(data + 1, size - 1);
  if (data[0] & 1)
    answers(in, step);
  else
    preamble(in, step);
  return 0;
}
