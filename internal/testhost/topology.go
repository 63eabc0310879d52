package testhost

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Topology says which hosts a fleet has and how they are wired. Use Home or
// Direct; the zero value means Home.
type Topology struct {
	kind   string // "home" or "direct"
	direct int
}

// Home is runner → tunnel (relay on 127.0.0.1) → frame1, frame1 ↔ rpi on a LAN
// the runner cannot route to, and web wired straight to the runner: the home
// fleet the design is built for.
var Home = Topology{kind: "home"}

// MaxDirect is the largest fleet Direct can wire (one /30 per host in the
// run's /24).
const MaxDirect = 63

// Direct is n hosts h01…hNN, each on its own link straight from the runner.
// It is the fleet for scaling benchmarks.
func Direct(n int) Topology { return Topology{kind: "direct", direct: n} }

// ParseTopology reads "home" or "direct:N" (the CLI's --topology).
func ParseTopology(s string) (Topology, error) {
	switch {
	case s == "" || s == "home":
		return Home, nil
	case strings.HasPrefix(s, "direct:"):
		n, err := strconv.Atoi(strings.TrimPrefix(s, "direct:"))
		if err != nil {
			return Topology{}, fmt.Errorf("topology %q: host count: %w", s, err)
		}
		t := Direct(n)
		return t, t.validate()
	}
	return Topology{}, fmt.Errorf("topology %q: want home or direct:N", s)
}

// String gives the form ParseTopology reads.
func (t Topology) String() string {
	if t.kind == "direct" {
		return "direct:" + strconv.Itoa(t.direct)
	}
	return "home"
}

func (t Topology) validate() error {
	if t.kind == "direct" && (t.direct < 1 || t.direct > MaxDirect) {
		return fmt.Errorf("topology direct:%d: want 1..%d hosts", t.direct, MaxDirect)
	}
	return nil
}

// The runner side of every run lives in 10.231.<lease>.0/24 cut in /30s
// (runner .4i+1, host .4i+2); LANs behind a host use 10.232.<lease>.0/24,
// which the runner's table marks unreachable so that a dial there fails at
// once instead of leaving through the machine's default route. The lease is
// unique among live runs (see claimRun); neither range is used by the machine
// (192.0.2.0/24) nor by anything else we know of.
const (
	uplinkNet = 231
	lanNet    = 232
)

type hostPlan struct {
	name    string
	ip      netip.Addr // the address sshd listens on
	via     string     // jump host, "" when the runner reaches it itself
	relayed bool       // the runner dials it through the relay
}

// linkPlan is one veth pair. a == "" is the runner's (root) namespace, whose
// end is named by rootName.
type linkPlan struct {
	a, aIf string
	aAddr  netip.Prefix
	b, bIf string
	bAddr  netip.Prefix
}

type layout struct {
	hosts       []hostPlan
	links       []linkPlan
	unreachable []netip.Prefix // routes the runner must not follow
}

func uplink(lease, i int) (runner, host netip.Prefix) {
	a := netip.AddrFrom4([4]byte{10, uplinkNet, byte(lease), byte(4*i + 1)})
	b := netip.AddrFrom4([4]byte{10, uplinkNet, byte(lease), byte(4*i + 2)})
	return netip.PrefixFrom(a, 30), netip.PrefixFrom(b, 30)
}

func lanAddr(lease, i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, lanNet, byte(lease), byte(i)}), 24)
}

// plan lays the topology out on the addresses of one lease.
func (t Topology) plan(lease int) (layout, error) {
	if err := t.validate(); err != nil {
		return layout{}, err
	}
	if lease < 0 || lease > 255 {
		return layout{}, fmt.Errorf("lease %d out of range", lease)
	}
	var l layout
	if t.kind == "direct" {
		for i := 0; i < t.direct; i++ {
			r, h := uplink(lease, i)
			name := fmt.Sprintf("h%02d", i+1)
			l.hosts = append(l.hosts, hostPlan{name: name, ip: h.Addr()})
			l.links = append(l.links, linkPlan{aAddr: r, b: name, bIf: "eth0", bAddr: h})
		}
		return l, nil
	}
	r0, frame1 := uplink(lease, 0)
	r1, web := uplink(lease, 1)
	gw, rpi := lanAddr(lease, 1), lanAddr(lease, 2)
	l.hosts = []hostPlan{
		{name: "frame1", ip: frame1.Addr(), relayed: true},
		{name: "rpi", ip: rpi.Addr(), via: "frame1"},
		{name: "web", ip: web.Addr()},
	}
	l.links = []linkPlan{
		{aAddr: r0, b: "frame1", bIf: "eth0", bAddr: frame1},
		{aAddr: r1, b: "web", bIf: "eth0", bAddr: web},
		{a: "frame1", aIf: "eth1", aAddr: gw, b: "rpi", bIf: "eth0", bAddr: rpi},
	}
	l.unreachable = []netip.Prefix{gw.Masked()}
	return l, nil
}
