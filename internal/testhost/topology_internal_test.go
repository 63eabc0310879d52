package testhost

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTopology(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "home", false},
		{"home", "home", false},
		{"direct:1", "direct:1", false},
		{"direct:16", "direct:16", false},
		{"direct:63", "direct:63", false},
		{"direct:0", "", true},
		{"direct:64", "", true},
		{"direct:x", "", true},
		{"star", "", true},
	}
	for _, tt := range tests {
		got, err := ParseTopology(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseTopology(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got.String() != tt.want {
			t.Errorf("ParseTopology(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestHomeLayout(t *testing.T) {
	l, err := Home.plan(7)
	if err != nil {
		t.Fatal(err)
	}
	type host struct{ Name, IP, Via string }
	var got []host
	for _, h := range l.hosts {
		got = append(got, host{h.name, h.ip.String(), h.via})
	}
	want := []host{{"frame1", "10.231.7.2", ""}, {"rpi", "10.232.7.2", "frame1"}, {"web", "10.231.7.6", ""}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("hosts (-want +got):\n%s", d)
	}
	if !l.hosts[0].relayed || l.hosts[1].relayed || l.hosts[2].relayed {
		t.Error("only frame1 should be behind the relay")
	}
	// rpi's LAN must be unreachable from the runner and no runner link on it.
	rpi := netip.MustParseAddr("10.232.7.2")
	if len(l.unreachable) != 1 || !l.unreachable[0].Contains(rpi) {
		t.Errorf("unreachable %v does not cover rpi", l.unreachable)
	}
	for _, lk := range l.links {
		if lk.a == "" && (lk.aAddr.Contains(rpi) || lk.bAddr.Contains(rpi)) {
			t.Errorf("runner link %+v reaches the LAN", lk)
		}
	}
}

func TestDirectLayoutAddressesAreDistinct(t *testing.T) {
	for _, lease := range []int{0, 255} {
		l, err := Direct(MaxDirect).plan(lease)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[netip.Addr]bool{}
		for i, lk := range l.links {
			if lk.a != "" || lk.b != l.hosts[i].name || lk.bAddr.Addr() != l.hosts[i].ip {
				t.Fatalf("link %d %+v does not wire host %s", i, lk, l.hosts[i].name)
			}
			for _, p := range []netip.Prefix{lk.aAddr, lk.bAddr} {
				if seen[p.Addr()] || p.Addr() == p.Masked().Addr() {
					t.Fatalf("lease %d: address %s reused or a network address", lease, p)
				}
				seen[p.Addr()] = true
				if lk.aAddr.Masked() != lk.bAddr.Masked() {
					t.Fatalf("link %d ends on different subnets: %s %s", i, lk.aAddr, lk.bAddr)
				}
			}
		}
		if len(l.unreachable) != 0 {
			t.Errorf("direct layout has unreachable routes %v", l.unreachable)
		}
	}
}
