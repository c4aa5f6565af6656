#include "shared/wire/rendezvous.h"

#include <algorithm>

#include "shared/base/check.h"

namespace ct::rdv {

namespace {

constexpr std::string_view kPreambleMagic = "CTBP";
constexpr std::string_view kAnswerMagic = "CTBA";

bool all_zero(const InstanceId& i) {
  return std::all_of(i.begin(), i.end(), [](uint8_t b) { return b == 0; });
}

// The instance-count rule of each role.
std::string count_problem(Role role, size_t n) {
  if (role == Role::kBroker && n != 1)
    return "a broker names exactly one instance, not " + std::to_string(n);
  if (role == Role::kBridge && n > kMaxInstances)
    return "a bridge names at most " + std::to_string(kMaxInstances) + " instances, not " +
           std::to_string(n);
  return {};
}

}  // namespace

const char* answer_name(Answer a) {
  switch (a) {
    case Answer::kPaired:
      return "PAIRED";
    case Answer::kKeepalive:
      return "KEEPALIVE";
    case Answer::kBadPreamble:
      return "BAD_PREAMBLE";
    case Answer::kNoPeer:
      return "NO_PEER";
    case Answer::kOverCapacity:
      return "OVER_CAPACITY";
    case Answer::kShutdown:
      return "SHUTDOWN";
  }
  return "?";
}

const char* role_name(Role r) {
  return r == Role::kBroker ? "broker" : "bridge";
}

std::string preamble_problem(const Preamble& p) {
  if (p.role != Role::kBroker && p.role != Role::kBridge) return "unknown role";
  if (std::string c = count_problem(p.role, p.instances.size()); !c.empty()) return c;
  for (size_t i = 0; i < p.instances.size(); i++) {
    if (all_zero(p.instances[i])) return "an all-zero instance id";
    for (size_t j = 0; j < i; j++)
      if (p.instances[j] == p.instances[i]) return "an instance id named twice";
  }
  return {};
}

std::vector<uint8_t> encode_preamble(const Preamble& p) {
  CT_CHECK(preamble_problem(p).empty());
  std::vector<uint8_t> out;
  ByteWriter w(out, kMaxPreamble);
  w.str(kPreambleMagic);
  w.u8(kVersion);
  w.u8(static_cast<uint8_t>(p.role));
  w.u8(0);
  w.u8(static_cast<uint8_t>(p.instances.size()));
  w.bytes(p.id);
  for (const InstanceId& i : p.instances) w.bytes(i);
  CT_CHECK(w.ok());
  return out;
}

size_t PreambleReader::wanted() const {
  return state_ == State::kMore ? need_ - buf_.size() : 0;
}

PreambleReader::State PreambleReader::fail(std::string why) {
  state_ = State::kBad;
  error_ = std::move(why);
  return state_;
}

PreambleReader::State PreambleReader::feed(Bytes b) {
  if (state_ != State::kMore) return b.empty() ? state_ : fail("bytes after the preamble");
  while (!b.empty() && state_ == State::kMore) {
    const size_t take = std::min(b.size(), need_ - buf_.size());
    buf_.insert(buf_.end(), b.begin(), b.begin() + static_cast<std::ptrdiff_t>(take));
    b = b.subspan(take);
    if (buf_.size() < need_) break;
    if (need_ == kPreambleFixed) {
      ByteReader r(buf_);
      if (r.str(4) != kPreambleMagic) return fail("not a rendezvous preamble (magic)");
      if (const uint8_t v = r.u8(); v != kVersion)
        return fail("preamble version " + std::to_string(v));
      const uint8_t role = r.u8();
      if (role != static_cast<uint8_t>(Role::kBroker) &&
          role != static_cast<uint8_t>(Role::kBridge))
        return fail("unknown role " + std::to_string(role));
      p_.role = static_cast<Role>(role);
      if (r.u8() != 0) return fail("preamble flags not zero");
      const uint8_t n = r.u8();
      if (std::string c = count_problem(p_.role, n); !c.empty()) return fail(c);
      r.copy_to(p_.id);
      CT_CHECK(r.finish());
      need_ = kPreambleFixed + n * kInstanceSize;
    }
    if (buf_.size() == need_) {
      ByteReader r(Bytes(buf_).subspan(kPreambleFixed));
      while (r.remaining() > 0) r.copy_to(p_.instances.emplace_back());
      CT_CHECK(r.finish());
      if (std::string why = preamble_problem(p_); !why.empty()) return fail(why);
      state_ = State::kDone;
    }
  }
  if (!b.empty()) return fail("bytes after the preamble");
  return state_;
}

std::vector<uint8_t> encode_answer(Answer a, std::string_view reason) {
  std::vector<uint8_t> out;
  const size_t n = std::min(reason.size(), kMaxReason);
  ByteWriter w(out, kAnswerFixed + kMaxReason);
  w.str(kAnswerMagic);
  w.u8(kVersion);
  w.u8(static_cast<uint8_t>(a));
  w.u16(static_cast<uint16_t>(n));
  for (size_t i = 0; i < n; i++) {
    const char c = reason[i];
    w.u8(c >= 0x20 && c < 0x7f ? static_cast<uint8_t>(c) : '?');
  }
  CT_CHECK(w.ok());
  return out;
}

size_t AnswerReader::wanted() const {
  return state_ == State::kMore ? need_ - buf_.size() : 0;
}

AnswerReader::State AnswerReader::fail(std::string why) {
  state_ = State::kBad;
  error_ = std::move(why);
  return state_;
}

void AnswerReader::next() {
  if (state_ != State::kDone) return;
  buf_.clear();
  need_ = kAnswerFixed;
  state_ = State::kMore;
  reason_.clear();
}

AnswerReader::State AnswerReader::feed(Bytes b) {
  if (state_ != State::kMore) return b.empty() ? state_ : fail("bytes after the answer");
  while (!b.empty() && state_ == State::kMore) {
    const size_t take = std::min(b.size(), need_ - buf_.size());
    buf_.insert(buf_.end(), b.begin(), b.begin() + static_cast<std::ptrdiff_t>(take));
    b = b.subspan(take);
    if (buf_.size() < need_) break;
    if (need_ == kAnswerFixed) {
      ByteReader r(buf_);
      if (r.str(4) != kAnswerMagic) return fail("not a beacon answer (magic)");
      if (const uint8_t v = r.u8(); v != kVersion)
        return fail("answer version " + std::to_string(v));
      const uint8_t code = r.u8();
      if (code > kMaxAnswer) return fail("unknown answer code " + std::to_string(code));
      answer_ = static_cast<Answer>(code);
      const uint16_t n = r.u16();
      if (n > kMaxReason) return fail("answer reason of " + std::to_string(n) + " bytes");
      CT_CHECK(r.finish());
      need_ = kAnswerFixed + n;
    }
    if (buf_.size() == need_) {
      for (size_t i = kAnswerFixed; i < buf_.size(); i++) {
        const uint8_t c = buf_[i];
        if (c < 0x20 || c >= 0x7f) return fail("answer reason not printable ASCII");
        reason_.push_back(static_cast<char>(c));
      }
      state_ = State::kDone;
    }
  }
  if (!b.empty()) return fail("bytes after the answer");
  return state_;
}

}  // namespace ct::rdv
