// Beacon mode's flags, the same in both daemons (docs/beacon.md): read by the
// parent, which derives the rendezvous id from the pairing key and orders the
// beacons; the TLS process gets only the id and the ordered names.
#pragma once

#include <string>
#include <vector>

#include "shared/base/result.h"
#include "shared/ipc/msgs.h"
#include "shared/os/flags.h"
#include "shared/os/net.h"
#include "shared/parent/material_store.h"

namespace ct {

// --beacon-address (repeatable, at most kMaxBeacons), --beacon-ca (required),
// --beacon-pin (repeatable), --pairing-key-file (required). Fills
// settings->beacons (normalised, in rendezvous order) and ->rendezvous, and
// files->beacon_ca and ->beacon_pins; returns the beacons in that order.
// A failure is one line naming the flag.
Result<std::vector<HostPort>> parse_beacon_flags(const Flags& f, ProcSettings* settings,
                                                 MaterialFiles* files);
// "a, b, c" for logs.
std::string join(const std::vector<std::string>& v);

}  // namespace ct
