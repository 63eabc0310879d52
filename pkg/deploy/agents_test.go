package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
)

// orderServer is an in-process SSH server whose commands run on this
// machine as root, recording what the deployer ran, and a state dir for
// root in a private directory of this machine's /var/lib (/tmp, every
// user's, is refused).
func orderServer(t *testing.T) (*remote.Client, *remotetest.Server, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the agent's state dir for root must be in a directory only root can write: needs root")
	}
	base, err := os.MkdirTemp("/var/lib", "tether-order-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	srv, d := h01(t)
	c, err := d.Dial(context.Background(), remote.Target{Name: "h01", Host: "127.0.0.1", Port: srv.Port()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, srv, base
}

// h01 is an in-process SSH server "h01" whose commands run on this
// machine, and a dialer that logs in to it as root and trusts its host key
// alone.
func h01(t *testing.T) (*remotetest.Server, *remote.Dialer) {
	t.Helper()
	signer := remotetest.NewSigner(t)
	srv := remotetest.NewServer(t, remotetest.Options{Name: "h01", AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	return srv, trustingDialer(t, srv, signer, "root")
}

// trustingDialer logs in with signer as user, trusting srv's host key
// alone.
func trustingDialer(t *testing.T, srv *remotetest.Server, signer ssh.Signer, user string) *remote.Dialer {
	t.Helper()
	keys := remote.NewHostKeys()
	if err := keys.AddKnownHosts([]byte(srv.KnownHosts()), "test"); err != nil {
		t.Fatal(err)
	}
	return &remote.Dialer{Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeys: keys, DefaultUser: user, DialTimeout: 10 * time.Second}
}

// stepPrograms name what a recorded command did, by the program it ran: the
// first whose text the command holds.
var stepPrograms = []struct{ program, step string }{
	{"uname -m", "check"},
	{"mkdir -m", "mkdir"},
	{"exec sha256sum", "sum"},
	{"gzip -dc", "receive"},
	{"mv -f", "commit"},
	{"exec rm -f", "remove"},
}

// step names what a recorded command did (see stepPrograms); a command
// none of them ran is named by its text.
func step(e remotetest.Exec) string {
	for _, s := range stepPrograms {
		if strings.Contains(e.Command, s.program) {
			return s.step
		}
	}
	return e.Command
}

// TestInstallChecksBeforeItUploadsAndHashesBeforeItRenames shows the order
// that closes the old race: the directory is checked before anything is
// sent, and the upload's hash is checked before it is renamed into place —
// an upload that does not hash right never becomes the agent.
func TestInstallChecksBeforeItUploadsAndHashesBeforeItRenames(t *testing.T) {
	c, srv, base := orderServer(t)
	src := newFileAgent(t, 64<<10)
	h := newAgentHome("h01", rootSettings(base))
	if err := h.install(context.Background(), c, src); err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range srv.Execs() {
		steps = append(steps, step(e))
	}
	if want := []string{"check", "mkdir", "check", "sum", "receive", "commit"}; !slices.Equal(steps, want) {
		t.Errorf("install ran %q, want %q", steps, want)
	}

	// An upload whose hash is not the one expected is removed, not
	// renamed into place.
	wrong := src
	wrong.sum = newFileAgent(t, 1).sum // another content's
	before := len(srv.Execs())
	err := newAgentHome("h01", rootSettings(base)).install(context.Background(), c, wrong)
	if err == nil || !strings.Contains(err.Error(), "has sha256 \""+src.sum+"\", want "+wrong.sum) {
		t.Fatalf("install of an agent that hashes wrong = %v", err)
	}
	steps = nil
	for _, e := range srv.Execs()[before:] {
		steps = append(steps, step(e))
	}
	if want := []string{"check", "sum", "receive", "remove"}; !slices.Equal(steps, want) {
		t.Errorf("install of a wrong upload ran %q, want %q", steps, want)
	}
	entries, _ := os.ReadDir(filepath.Join(base, "tether"))
	if len(entries) != 1 || entries[0].Name() != "agent-"+src.sum {
		t.Errorf("state dir holds %v, want only the first agent", entries)
	}
}

// TestFloodingNodeIsNotFollowedForEver: a node whose event log streams
// without end (an activation printing for ever, or a node lying) is cut at
// the transport's bound, and the deployer stops following it at once,
// saying so, instead of reconnecting into the same flood until its
// deadline.
func TestFloodingNodeIsNotFollowedForEver(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "agent")
	script := `#!/bin/sh
case "$1" in
start) echo '{"ok":true,"deployId":"d"}' ;;
follow) exec yes '{"seq":1,"type":"log","stream":"stdout","line":"flood"}' ;;
esac
`
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	srv, d := h01(t)
	target := remote.Target{Name: "h01", Host: "127.0.0.1", Port: srv.Port()}
	n := &nodeRun{e: &Engine{Dialer: d}, node: &fleet.Node{Name: "h01"}, dialer: d, conn: &conn{dialer: d, target: target}}
	defer n.conn.drop()
	a := &activation{n: n, home: &agentHome{path: fake, stateDir: dir}, dir: filepath.Join(dir, "d"), label: "system",
		req: agent.Request{DeployID: "d", ActivationTimeout: agent.Duration(time.Minute), ConfirmTimeout: agent.Duration(time.Minute)}}
	start := time.Now()
	_, err := a.run(context.Background())
	st, err := mapAgentResult(agent.Result{}, err)
	if st != StatusUncertain || err == nil || !strings.Contains(err.Error(), "stopped following system: node h01 sent more than 16 MiB on stdout answering "+fake+" follow") {
		t.Fatalf("status %s, error %v; want uncertain, saying the node sent too much", st, err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %s to give up on the flood", took)
	}
}
