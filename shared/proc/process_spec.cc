#include "shared/proc/process_spec.h"

namespace ct {

std::optional<ProcRole> role_from_name(std::string_view name) {
  for (ProcRole r : {ProcRole::kParent, ProcRole::kTls, ProcRole::kForward})
    if (name == role_name(r)) return r;
  return std::nullopt;
}

SandboxSpec child_sandbox(const ProcessSpec& p, std::span<const SyscallRule> syscalls) {
  SandboxSpec s;
  s.process = p.sandbox;
  s.syscalls = syscalls;
  s.tcp_options = true;
  return s;
}

}  // namespace ct
