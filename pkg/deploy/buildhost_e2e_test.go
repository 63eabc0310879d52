package deploy

import (
	"context"
	"path/filepath"
	"testing"
)

// TestBuildHostDirIsPrivate is the attack on a build host's fixed
// /tmp/tether-lan: a user of the build host makes it a symbolic link to a
// directory of their choice, and root writes the node's known_hosts file
// (and before it, GC roots) there. The builder's directory is now a fresh
// one of its own, and goes when the run ends.
func TestBuildHostDirIsPrivate(t *testing.T) {
	a := startAgentHost(t)
	a.sh(t, `mkdir -p /var/lib/victim && setpriv --reuid=4242 --regid=4242 --clear-groups -- ln -s /var/lib/victim /tmp/tether-lan`)
	b := &builder{name: "h01", conn: &conn{dialer: a.dialer, target: a.target}}
	c, err := b.conn.client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	path, err := b.knownHosts(context.Background(), c, lanRoute{host: "10.0.0.9", port: 22, user: "root"}, c.HostKey())
	if err != nil {
		t.Fatal(err)
	}
	if left := a.sh(t, `ls -A /var/lib/victim`); left != "" {
		t.Errorf("the known_hosts file went through the planted link: %q", left)
	}
	dir := filepath.Dir(path)
	if got := a.sh(t, `stat -c '%u %a %F' "$1"; grep -c 10.0.0.9 "$2"`, dir, path); got != "0 700 directory\n1" {
		t.Errorf("the builder's directory %s: %q, want root's, private, holding the key", dir, got)
	}
	b.close(context.Background())
	if _, err := a.h.Exec(context.Background(), "test", "-e", dir); err == nil {
		t.Errorf("%s is left after the run", dir)
	}
}
