package deploy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// fileAgent is an AgentSource with one file for every architecture.
type fileAgent struct{ path, sum string }

func (a fileAgent) Agent(string) (string, string, error) { return a.path, a.sum, nil }

// newFileAgent writes "the agent": a program that prints "agent ran",
// padded with size random bytes so that an upload takes a while and a
// race has room.
func newFileAgent(t *testing.T, size int) fileAgent {
	t.Helper()
	pad := make([]byte, size)
	rand.Read(pad)
	data := append([]byte("#!/bin/sh\necho agent ran\nexit 0\n"), hex.EncodeToString(pad)...)
	path := filepath.Join(t.TempDir(), "tether-agent")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return fileAgent{path: path, sum: hex.EncodeToString(sum[:])}
}

// agentHost is one sandbox host and a way in as root.
type agentHost struct {
	h      *testhost.Host
	dialer *remote.Dialer
	target remote.Target
}

func startAgentHost(t *testing.T) *agentHost {
	t.Helper()
	fl := testhost.StartT(t, testhost.Options{Topology: testhost.Direct(1)})
	h := fl.Host("h01")
	keys := remote.NewHostKeys()
	if err := keys.AddKnownHosts(fl.KnownHosts(), "testhost"); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(h.SSHAddr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return &agentHost{h: h,
		dialer: &remote.Dialer{Auth: []ssh.AuthMethod{ssh.PublicKeys(fl.ClientSigner)}, HostKeys: keys, DefaultUser: "root", DialTimeout: 20 * time.Second},
		target: remote.Target{Name: "h01", Host: host, Port: p, User: "root"},
	}
}

func (a *agentHost) client(t *testing.T) *remote.Client {
	t.Helper()
	c, err := a.dialer.Dial(context.Background(), a.target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sh runs a script as root in the host.
func (a *agentHost) sh(t *testing.T, script string, args ...string) string {
	t.Helper()
	out, err := a.h.Exec(context.Background(), append([]string{"sh", "-c", script, "sh"}, args...)...)
	if err != nil {
		t.Fatalf("h01: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// rootSettings are a root node's, with tempPath set in a flake when given.
func rootSettings(tempPath string) fleet.Settings {
	s := fleet.Settings{SSHUser: "root", User: "root", TempPath: fleet.DefaultTempPath,
		Origins: map[string]fleet.Origin{fleet.KeyTempPath: {Source: fleet.OriginDefault}}}
	if tempPath != "" {
		s.TempPath = tempPath
		s.Origins[fleet.KeyTempPath] = fleet.Origin{Source: fleet.OriginDeployNodes, Key: "deploy.nodes.h01.tempPath", File: "flake.nix", Line: 12}
	}
	return s
}

// The attacker is uid 4242, a user of the node without any privilege: no
// account is needed for a uid to own files and run programs.
const attacker = "4242"

// asAttacker is argv run as the attacker in the host.
func asAttacker(argv ...string) []string {
	return append([]string{"setpriv", "--reuid=" + attacker, "--regid=" + attacker, "--clear-groups", "--"}, argv...)
}

// TestStateDirOthersControlAreRefused is issue 11's first attack and its
// variants: a local user prepares the state dir (or a symbolic link in its
// place, or a directory above it) before the first deploy. The deployer
// must refuse it by name before anything is uploaded or run.
func TestStateDirOthersControlAreRefused(t *testing.T) {
	a := startAgentHost(t)
	src := newFileAgent(t, 1<<20)
	for _, tc := range []struct {
		name     string
		prepare  string // run as root in the host before the install
		tempPath string
		want     string
		empty    string // a directory that must hold no agent after the refusal
	}{{
		// The old default: /tmp/tether, made first by the attacker,
		// who then renames their own program over the agent once its
		// hash has been checked.
		name:     "tempPath /tmp, made by the attacker",
		prepare:  `setpriv --reuid=4242 --regid=4242 --clear-groups -- mkdir -m 777 /tmp/tether`,
		tempPath: "/tmp",
		// (/tmp is writable by everyone; the sandbox's lacks the
		// sticky bit a real one has, which changes nothing.)
		want:  "so the agent of user root cannot live in /tmp/tether: another user could replace it; tempPath (set at flake.nix:12 (deploy.nodes.h01.tempPath)) must name a directory only root can write, such as /var/lib (the default)",
		empty: "/tmp/tether",
	}, {
		name:     "state dir owned by another user",
		prepare:  `mkdir -p /var/lib/pre/tether && chown 4242 /var/lib/pre/tether`,
		tempPath: "/var/lib/pre",
		want:     "/var/lib/pre/tether belongs to uid 4242",
		empty:    "/var/lib/pre/tether",
	}, {
		name:     "a parent owned by another user",
		prepare:  `mkdir -p /var/lib/theirs && chown 4242 /var/lib/theirs`,
		tempPath: "/var/lib/theirs",
		want:     "/var/lib/theirs belongs to uid 4242",
		empty:    "/var/lib/theirs",
	}, {
		name:    "a symbolic link in the state dir's place",
		prepare: `mkdir -p /var/lib/elsewhere && ln -s /var/lib/elsewhere /var/lib/tether`,
		want:    "/var/lib/tether is a symbolic link",
		empty:   "/var/lib/elsewhere",
	}, {
		name:    "a state dir its group can write",
		prepare: `mkdir -p -m 770 /var/lib/tether`,
		want:    "/var/lib/tether is writable by other users (mode 0770)",
		empty:   "/var/lib/tether",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			a.sh(t, `rm -rf /tmp/tether /var/lib/tether /var/lib/pre /var/lib/theirs /var/lib/elsewhere`)
			a.sh(t, tc.prepare)
			h := newAgentHome("h01", rootSettings(tc.tempPath))
			err := h.install(context.Background(), a.client(t), src)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "node h01: ") {
				t.Fatalf("install = %v, want a refusal saying %q", err, tc.want)
			}
			if h.path != "" {
				t.Errorf("the refused install gave an agent path %s", h.path)
			}
			if left := a.sh(t, `ls -A "$1"`, tc.empty); left != "" {
				t.Errorf("%s holds %q after the refusal: something was uploaded", tc.empty, left)
			}
		})
	}
}

// TestAgentInstall installs into a fresh state dir, then shows that the
// rename-after-the-hash-check race of the old layout has no way in: an
// attacker trying, all through the install, to put a file of their own in
// the state dir is refused every time, and the agent in place is the one
// that was checked.
func TestAgentInstall(t *testing.T) {
	a := startAgentHost(t)
	src := newFileAgent(t, 8<<20)
	a.sh(t, `rm -rf /var/lib/tether`)

	stop := make(chan struct{})
	var wins, tries int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Create and rename are what the old attack did.
			script := `echo evil > /var/lib/tether/evil && mv -f /var/lib/tether/evil /var/lib/tether/agent-` + src.sum
			_, err := a.h.Exec(context.Background(), asAttacker("sh", "-c", script+" 2>/dev/null")...)
			tries++
			if err == nil {
				wins++
			}
		}
	}()
	h := newAgentHome("h01", rootSettings(""))
	err := h.install(context.Background(), a.client(t), src)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if wins > 0 {
		t.Errorf("the attacker wrote into the state dir %d times out of %d", wins, tries)
	}
	t.Logf("the attacker tried %d times during the install", tries)
	if want := "/var/lib/tether/agent-" + src.sum; h.path != want || h.stateDir != "/var/lib/tether" {
		t.Errorf("agent at %s in %s, want %s", h.path, h.stateDir, want)
	}
	if got := a.sh(t, `sha256sum "$1" | cut -d' ' -f1; stat -c '%u %a' /var/lib/tether "$1"`, h.path); got != src.sum+"\n0 700\n0 755" {
		t.Errorf("hash, state dir and agent modes: %q", got)
	}
	if left := a.sh(t, `ls -A /var/lib/tether`); left != "agent-"+src.sum {
		t.Errorf("state dir holds %q, want only the agent", left)
	}

	// Next time the agent is found and not sent again.
	before := a.sh(t, `stat -c %Y.%i "$1"`, h.path)
	time.Sleep(1100 * time.Millisecond)
	h2 := newAgentHome("h01", rootSettings(""))
	if err := h2.install(context.Background(), a.client(t), src); err != nil || h2.path != h.path {
		t.Fatalf("second install: %s, %v", h2.path, err)
	}
	if after := a.sh(t, `stat -c %Y.%i "$1"`, h.path); after != before {
		t.Errorf("the agent was uploaded again (%s → %s)", before, after)
	}
}

// TestConcurrentInstallsDoNotClobber: deploys that install the same agent
// on one node at once, each starting while the others are half way, each
// upload to a name of their own, so none truncates another's upload under
// it; all succeed with the checked agent in place, and no upload is left
// behind.
func TestConcurrentInstallsDoNotClobber(t *testing.T) {
	a := startAgentHost(t)
	src := newFileAgent(t, 8<<20)
	payloadFor(src.path, src.sum) // compressed once, before: the installs start apart
	for round := range 5 {
		a.sh(t, `rm -rf /var/lib/tether && mkdir -m 700 /var/lib/tether`)
		const n = 4
		clients := make([]*remote.Client, n)
		for i := range clients {
			clients[i] = a.client(t)
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 40 * time.Millisecond)
				h := newAgentHome("h01", rootSettings(""))
				if errs[i] = h.install(context.Background(), clients[i], src); errs[i] != nil {
					return
				}
				// Run at once, as a deploy does: no other upload may
				// still be writing into it ("text file busy").
				out, err := clients[i].Output(context.Background(), h.path)
				if err != nil || string(out) != "agent ran\n" {
					errs[i] = fmt.Errorf("run the agent just installed: %q, %w", out, err)
				}
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: install %d: %v", round, i, err)
			}
		}
		if got := a.sh(t, `sha256sum /var/lib/tether/agent-* | cut -d' ' -f1; ls -A /var/lib/tether | grep -c upload || true`); got != src.sum+"\n0" {
			t.Errorf("round %d: agent hash and uploads left: %q", round, got)
		}
	}
}

// TestStateDirOfAnotherUser: a profile run as a user other than root keeps
// its agent in that user's own state dir, found from the home directory
// the node reports, created as that user.
func TestStateDirOfAnotherUser(t *testing.T) {
	a := startAgentHost(t)
	src := newFileAgent(t, 1<<20)
	a.sh(t, `mkdir -p /var/lib/alice /var/lib/tether-test && chown 4242:4242 /var/lib/alice && chmod 700 /var/lib/alice`)
	// The node's sudo command here (the machine has no sudo).
	cmd := a.h.Command(context.Background(), "sh", "-c", `cat > /var/lib/tether-test/as-user && chmod 755 /var/lib/tether-test/as-user`)
	cmd.Stdin = strings.NewReader("#!/bin/sh\nshift\nexec env HOME=/var/lib/alice setpriv --reuid=4242 --regid=4242 --clear-groups -- \"$@\"\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	s := rootSettings("")
	s.User, s.Sudo = "alice", "/var/lib/tether-test/as-user"
	h := newAgentHome("h01", s)
	if err := h.install(context.Background(), a.client(t), src); err != nil {
		t.Fatal(err)
	}
	want := "/var/lib/alice/.local/state/tether"
	if h.stateDir != want {
		t.Errorf("alice's state dir %s, want %s", h.stateDir, want)
	}
	if got := a.sh(t, `stat -c '%u %a' "$1" "$2"`, want, h.path); got != "4242 700\n4242 755" {
		t.Errorf("alice's state dir and agent: %q, want hers", got)
	}
	if _, err := a.h.Exec(context.Background(), "test", "-e", "/var/lib/tether"); err == nil {
		t.Error("root's state dir was made for alice's agent")
	}
}
