#include "shared/proc/process_spec.h"

#include <cstdio>
#include <string>

namespace ct {

std::optional<ProcRole> role_from_name(std::string_view name) {
  for (ProcRole r : {ProcRole::kParent, ProcRole::kTls, ProcRole::kForward})
    if (name == role_name(r)) return r;
  return std::nullopt;
}

namespace {

// "before SETTINGS", "after SETTINGS", "any time": named after the message
// that opens the table's running phase.
std::string phase_text(std::span<const MsgRule> table, uint8_t when) {
  if (when == kPhaseAny) return "any time";
  const char* opener = "the running phase";
  for (const MsgRule& r : table)
    if ((r.flags & kOpens) != 0) opener = msg_name(r.type);
  return std::string(when == kPhaseSetup ? "before " : "after ") + opener;
}

void print_table(const char* from, std::span<const MsgRule> table) {
  for (const MsgRule& r : table) {
    std::string notes;
    if ((r.flags & kOpens) != 0) notes += "  # starts the running phase";
    if (r.after != Msg::kNone) notes += std::string("  # only right after ") + msg_name(r.after);
    char line[160];
    std::snprintf(line, sizeof line, "%-8s %-17s %-4s %-8u %-16s %-4s%s", from, msg_name(r.type),
                  r.has_fd ? "fd" : "-", r.max_len, phase_text(table, r.when).c_str(),
                  (r.flags & kOnce) != 0 ? "once" : "-", notes.c_str());
    std::string text(line);
    text.erase(text.find_last_not_of(' ') + 1);  // no trailing blanks after "-"
    std::printf("%s\n", text.c_str());
  }
}

}  // namespace

SandboxSpec child_sandbox(const ProcessSpec& p, std::span<const SyscallRule> syscalls) {
  SandboxSpec s;
  s.process = p.sandbox;
  s.syscalls = syscalls;
  s.tcp_options = true;
  return s;
}

void ipc_print_policy(const DaemonProcs& procs, ProcRole role) {
  const ProcessSpec& p = procs.of(role);
  std::printf("# %s %s: control messages accepted (anything else ends the process)\n", procs.daemon,
              role_name(role));
  std::printf("# %-6s %-17s %-4s %-8s %-16s %s\n", "from", "message", "fd", "max_len", "phase",
              "once");
  if (role == ProcRole::kParent) {
    print_table("tls", p.from_tls);
    print_table("forward", p.from_forward);
    std::printf("# data channel: none (the parent joins the two children's ends)\n");
  } else {
    print_table("parent", p.from_parent);
    std::printf("# data channel: the %s end; it %s streams, window %u bytes per stream\n",
                role_name(role), p.data_channel.opens_streams ? "opens" : "accepts",
                p.data_channel.stream_window);
  }
  std::printf("# sandbox: %s\n", p.sandbox != nullptr ? p.sandbox : "none");
}

}  // namespace ct
