#include "broker/beacon_pool.h"

#include <algorithm>

#include "shared/base/check.h"
#include "shared/wire/limits.h"

namespace ct::broker {

namespace {
long long ms(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}
}  // namespace

BeaconPool::BeaconPool(size_t beacons, size_t per_beacon, Jitter jitter)
    : beacons_(beacons), per_beacon_(per_beacon), jitter_(std::move(jitter)) {}

std::optional<size_t> BeaconPool::due(TimePoint now) {
  if (stopped_ || dialing_) return std::nullopt;
  // The beacon with the fewest waiting connections first, so that one that
  // keeps failing does not hold back the others.
  std::optional<size_t> pick;
  for (size_t i = 0; i < beacons_.size(); i++) {
    const Beacon& b = beacons_[i];
    if (b.waiting >= per_beacon_ || now < b.not_before) continue;
    if (!pick || b.waiting < beacons_[*pick].waiting) pick = i;
  }
  dialing_ = pick;
  return pick;
}

TimePoint BeaconPool::next_deadline() const {
  if (stopped_ || dialing_) return TimePoint::max();
  TimePoint t = TimePoint::max();
  for (const Beacon& b : beacons_)
    if (b.waiting < per_beacon_) t = std::min(t, b.not_before);
  return t;
}

void BeaconPool::on_dialed() {
  CT_CHECK(dialing_.has_value());
  beacons_[*dialing_].waiting++;
  dialing_.reset();
}

void BeaconPool::on_dial_failed(TimePoint now) {
  CT_CHECK(dialing_.has_value());
  back_off(beacons_[*dialing_], /*expensive=*/false, now);
  dialing_.reset();
}

void BeaconPool::on_paired(size_t b) {
  Beacon& x = beacons_.at(b);
  CT_CHECK(x.waiting > 0);
  x.waiting--;
  x.failures = 0;
}

void BeaconPool::on_lost(size_t b, bool expensive, TimePoint now) {
  Beacon& x = beacons_.at(b);
  CT_CHECK(x.waiting > 0);
  x.waiting--;
  back_off(x, expensive, now);
}

void BeaconPool::back_off(Beacon& b, bool expensive, TimePoint now) {
  long long wait = 0;
  if (!expensive) {
    wait = jitter_(ms(limits::kRedialMin), ms(limits::kRedialMax));
  } else {
    const unsigned k = std::min(b.failures, 5u);  // 1 s << 5 = 32 s: past the cap
    b.failures++;
    const long long cap =
        std::min(ms(limits::kRedialBackoffBase) << k, ms(limits::kRedialBackoffCap));
    wait = std::max(jitter_(0, cap), ms(limits::kRedialMin));
  }
  b.not_before = std::max(b.not_before, now + std::chrono::milliseconds(wait));
}

}  // namespace ct::broker
