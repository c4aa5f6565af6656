# Vault host kit: the systemd unit, the egress-lock firewall helper, the
# SELinux module and the DEB/RPM packages, with their checks.
#
#   make deb | rpm           build/vaulthost/packages/vault-bridge_*.deb / *.rpm and
#                            cloudtaser-beacon_*.deb / *.rpm
#   make check-vaulthost     every check below (part of `make test`)
#   make check-systemd       verify + exposure score of the packaged unit
#   make check-egress-lock   dry-run == the guide's rules; real traffic in netns
#   make check-selinux       compile the policy module, check what it allows
#   make check-packages      lintian, install into a scratch root, rpm -qlp
#
# Each check installs the Debian packages it needs when run as root.

VH_BUILD    := $(BUILD)/vaulthost
VH_DEB_DEPS := systemd iptables nftables iproute2 python3 shellcheck util-linux \
               checkpolicy policycoreutils selinux-policy-dev m4 \
               dpkg-dev lintian rpm fakeroot binutils adduser gzip
VH_DEPS_STAMP := $(BUILD)/.vh-deps-$(shell echo $(VH_DEB_DEPS) | md5sum | cut -c1-8)

$(VH_DEPS_STAMP):
	@mkdir -p $(BUILD)
	$(call apt_ensure,$(VH_DEB_DEPS))
	@touch $@

.PHONY: vaulthost-deps check-vaulthost check-systemd check-egress-lock check-shell check-selinux
vaulthost-deps: $(VH_DEPS_STAMP)

check-shell: $(VH_DEPS_STAMP)
	shellcheck bridge/vault-egress-lock tests/vaulthost/*.sh packaging/build-packages.sh
	shellcheck -s sh packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm
	shellcheck -s sh packaging/deb/beacon/postinst packaging/deb/beacon/prerm packaging/deb/beacon/postrm

check-systemd: $(VH_DEPS_STAMP)
	bash tests/vaulthost/check-systemd.sh $(wildcard $(BUILD)/vault-bridge) $(wildcard $(BUILD)/cloudtaser-beacon)

check-egress-lock: $(VH_DEPS_STAMP)
	bash tests/vaulthost/egress-lock-cli.sh
	PYTHON=$(PYTHON) bash tests/vaulthost/egress-lock-netns.sh

# The module as the packages ship it, compiled and checked.
VH_PP := $(VH_BUILD)/selinux/vault_bridge.pp
VH_BEACON_PP := $(VH_BUILD)/selinux/cloudtaser_beacon.pp
$(VH_BEACON_PP): $(VH_PP)
$(VH_PP): $(wildcard selinux/*.te selinux/*.fc selinux/*.if) tests/vaulthost/selinux_rules.py | $(VH_DEPS_STAMP)
	PYTHON=$(PYTHON) bash tests/vaulthost/check-selinux.sh $(VH_BUILD)/selinux
check-selinux: $(VH_DEPS_STAMP)
	PYTHON=$(PYTHON) bash tests/vaulthost/check-selinux.sh $(VH_BUILD)/selinux

# ---------------------------------------------------------------- packages
VH_PKGDIR := $(VH_BUILD)/packages
VH_DEB    := $(VH_PKGDIR)/vault-bridge_$(VERSION)-1_$(shell dpkg --print-architecture 2>/dev/null).deb
VH_RPM    := $(VH_PKGDIR)/vault-bridge-$(VERSION)-1.$(shell uname -m).rpm
VH_PKG_IN := $(BUILD)/vault-bridge $(BUILD)/vault-bridge-forward $(VH_PP) bridge/vault-egress-lock \
             systemd/vault-bridge.service systemd/vault-bridge@.service systemd/vault-bridge.env \
             systemd/vault-bridge-beacon-mode.conf systemd/vault-bridge@-beacon-mode.conf \
             systemd/vault-egress-lock-restore.service docs/man/vault-bridge.8 \
             docs/man/vault-egress-lock.8 packaging/build-packages.sh $(wildcard packaging/deb/*) \
             packaging/rpm/vault-bridge.spec VERSION

# The beacon's package: the relay, its forwarding executable, unit, env file, man page.
VH_BEACON_DEB := $(VH_PKGDIR)/cloudtaser-beacon_$(VERSION)-1_$(shell dpkg --print-architecture 2>/dev/null).deb
VH_BEACON_RPM := $(VH_PKGDIR)/cloudtaser-beacon-$(VERSION)-1.$(shell uname -m).rpm
VH_BEACON_IN  := $(BUILD)/cloudtaser-beacon $(BUILD)/cloudtaser-beacon-forward $(VH_BEACON_PP) \
                 systemd/cloudtaser-beacon.service systemd/cloudtaser-beacon.env \
                 docs/man/cloudtaser-beacon.8 packaging/build-packages.sh packaging/deb/copyright \
                 $(wildcard packaging/deb/beacon/*) packaging/rpm/cloudtaser-beacon.spec VERSION

.PHONY: deb rpm check-packages
deb: $(VH_DEB) $(VH_BEACON_DEB)
rpm: $(VH_RPM) $(VH_BEACON_RPM)
$(VH_DEB): $(VH_PKG_IN) | $(VH_DEPS_STAMP)
	bash packaging/build-packages.sh deb $(BUILD)/vault-bridge $(BUILD)/vault-bridge-forward \
	  $(VERSION) $(VH_PP) $(VH_PKGDIR)
$(VH_RPM): $(VH_PKG_IN) | $(VH_DEPS_STAMP)
	bash packaging/build-packages.sh rpm $(BUILD)/vault-bridge $(BUILD)/vault-bridge-forward \
	  $(VERSION) $(VH_PP) $(VH_PKGDIR)

$(VH_BEACON_DEB): $(VH_BEACON_IN) | $(VH_DEPS_STAMP)
	bash packaging/build-packages.sh deb cloudtaser-beacon $(BUILD)/cloudtaser-beacon \
	  $(BUILD)/cloudtaser-beacon-forward $(VERSION) $(VH_BEACON_PP) $(VH_PKGDIR)
$(VH_BEACON_RPM): $(VH_BEACON_IN) | $(VH_DEPS_STAMP)
	bash packaging/build-packages.sh rpm cloudtaser-beacon $(BUILD)/cloudtaser-beacon \
	  $(BUILD)/cloudtaser-beacon-forward $(VERSION) $(VH_BEACON_PP) $(VH_PKGDIR)

check-packages: $(VH_DEB) $(VH_RPM) $(VH_BEACON_DEB) $(VH_BEACON_RPM)
	bash tests/vaulthost/check-packages.sh $(VH_DEB) $(VH_RPM) $(VH_BEACON_DEB) $(VH_BEACON_RPM)

check-vaulthost: check-shell check-systemd check-egress-lock check-selinux check-packages
CHECKS += check-vaulthost
