// Package testhost runs sandbox hosts for end-to-end tests and the demo: each
// host is a network namespace reached over veth links, plus a private mount
// namespace in which the host's own directory is bind-mounted on /nix (its own
// store and database), /run (so /run/current-system is per host), /tmp and
// /root (so the runner's dotfiles stay out of its sessions), running its own
// sshd with its own host key (root login by key only).
//
// Copies between hosts are real copies into separate stores, activations
// change only that host's /run, and a host behind another one is reachable
// only by jumping through it, so the deployer is tested the way it is used.
//
// Layout (other packages and the fixture flake rely on it):
//
//	/var/tmp/tether-testhost/<run>/            one directory per run, flock'd by its owner
//	/var/tmp/tether-testhost/<run>/<host>/nix  bind-mounted on /nix inside the host
//	                                      run  on /run  (testhost/sshd-start, testhost/name,
//	                                                     testhost/known_hosts, sshd.pid;
//	                                                     testhost/reboot: the power button)
//	                                      tmp  on /tmp
//	                                      var/lib on /var/lib
//	                                      boot on /boot (boot/loader: systemd-boot's layout)
//	                                      boot_id on /proc/sys/kernel/random/boot_id
//	                                      root on /root
//	                                      etc  sshd_config, host key, authorized_keys, nix/nix.conf
//	/var/tmp/tether-testhost/<run>/client_ed25519, known_hosts, owner.json, lock
//	netns tth-<run>-<host>, runner-side links tth-<run>-<i>, inside: lo, eth0 (eth1 on a LAN gateway)
//
// Addresses: runner links in 10.231.<lease>.0/30s, LANs behind a host in
// 10.232.<lease>.0/24 (unreachable from the runner). The runner's build user
// pool (/nix/var/nix/userpool) is shared into every host so that separate
// stores never build as the same build user at once.
//
// A host can lose power and boot again (Host.PowerCut, PowerOn, Reset; see
// power.go): every process killed, /run lost, a new boot ID, and the boot
// entry its boot loader chose started — as a machine does.
//
// Everything a run creates is removed by Fleet.Close; what a crashed run left
// behind (its owner no longer holds the run's lock) is removed by the next
// Start or by `testhost clean`.
package testhost
