#include "shared/os/timers.h"

#include <utility>

namespace ct {

void Timer::arm(TimePoint at) {
  if (armed()) {
    if (at == at_) return;  // the common re-arm after a batch that moved nothing
    heap_.remove(this);
  }
  if (at == TimePoint::max()) return;
  at_ = at;
  heap_.insert(this);
}

void Timer::cancel() {
  if (armed()) heap_.remove(this);
}

bool TimerHeap::before(size_t a, size_t b) const {
  const Timer* x = heap_[a];
  const Timer* y = heap_[b];
  return x->at_ != y->at_ ? x->at_ < y->at_ : x->seq_ < y->seq_;
}

void TimerHeap::place(size_t i, Timer* t) {
  heap_[i] = t;
  t->index_ = i;
}

void TimerHeap::sift_up(size_t i) {
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!before(i, parent)) break;
    Timer* p = heap_[parent];
    place(parent, heap_[i]);
    place(i, p);
    i = parent;
  }
}

void TimerHeap::sift_down(size_t i) {
  for (;;) {
    const size_t l = 2 * i + 1, r = l + 1;
    size_t m = i;
    if (l < heap_.size() && before(l, m)) m = l;
    if (r < heap_.size() && before(r, m)) m = r;
    if (m == i) break;
    Timer* t = heap_[m];
    place(m, heap_[i]);
    place(i, t);
    i = m;
  }
}

void TimerHeap::insert(Timer* t) {
  t->seq_ = next_seq_++;
  heap_.push_back(t);
  t->index_ = heap_.size() - 1;
  sift_up(t->index_);
}

void TimerHeap::remove(Timer* t) {
  const size_t i = t->index_;
  t->index_ = Timer::kNone;
  Timer* last = heap_.back();
  heap_.pop_back();
  if (last == t) return;
  place(i, last);
  // The moved timer may belong above or below its new place.
  sift_up(i);
  sift_down(last->index_);
}

size_t TimerHeap::run_due(TimePoint now) {
  const uint64_t armed_before = next_seq_;
  size_t fired = 0;
  while (!heap_.empty()) {
    Timer* t = heap_.front();
    if (t->at_ > now || t->seq_ >= armed_before) break;
    remove(t);
    fired++;
    t->cb_(now);
  }
  return fired;
}

}  // namespace ct
