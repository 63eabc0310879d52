package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// alice is the unprivileged user of the trust tests: a uid with no account
// (the sandbox hosts share the machine's /etc), run with setpriv.
const (
	alice     = "alice"
	aliceUID  = 4242
	aliceHome = "/var/lib/alice" // in the host's own /var/lib
	// asUser is the node's sudo command in these tests (the machine has
	// no sudo): `as-user alice argv...` runs argv as alice, with her home
	// and the host's nix daemon, as sudo -u alice would.
	asUser = "/var/lib/tether-test/as-user"
)

const asUserScript = `#!/bin/sh
case $1 in
alice) uid=4242 ;;
*) echo "as-user: unknown user $1" >&2; exit 1 ;;
esac
shift
exec env HOME=/var/lib/alice USER=alice LOGNAME=alice NIX_REMOTE=daemon \
	setpriv --reuid=$uid --regid=$uid --clear-groups -- "$@"
`

// hostSh runs a shell script as root inside a sandbox host.
func hostSh(ctx context.Context, t *testing.T, h *testhost.Host, script string, args ...string) string {
	t.Helper()
	out, err := h.Exec(ctx, append([]string{"sh", "-c", script, "sh"}, args...)...)
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	return string(out)
}

// withAlice gives host h the user alice: a home, a per-user profile
// directory she owns, the as-user command, and a nix daemon for her nix-env
// (only root may open the store directly).
func withAlice(ctx context.Context, t *testing.T, h *testhost.Host) {
	t.Helper()
	hostSh(ctx, t, h, `set -e
mkdir -p "$1" /nix/var/nix/profiles/per-user/alice /var/lib/tether-test
chown 4242:4242 "$1" /nix/var/nix/profiles/per-user/alice
chmod 700 "$1"`, aliceHome)
	cmd := h.Command(context.Background(), "sh", "-c", `cat > "$1" && chmod 755 "$1"`, "sh", asUser)
	cmd.Stdin = strings.NewReader(asUserScript)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("write %s: %v %s", asUser, err, out)
	}
	daemon := h.Command(context.Background(), "nix-daemon")
	if err := daemon.Start(); err != nil {
		t.Fatalf("start nix-daemon in %s: %v", h.Name, err)
	}
	t.Cleanup(func() {
		daemon.Process.Kill()
		daemon.Wait()
	})
	waitUntil(t, "the nix daemon's socket", func() bool {
		_, err := h.Exec(ctx, "test", "-S", "/nix/var/nix/daemon-socket/socket")
		return err == nil
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// homeActivations reads who activated home profiles on h: "<uid> <profile>"
// lines.
func homeActivations(ctx context.Context, h *testhost.Host) []string {
	b, _ := h.ReadFile(ctx, fixture.HomeActivationsFile)
	return strings.Fields(strings.ReplaceAll(string(b), " ", "|"))
}

// TestEachProfileRunsAsItsUser deploys the usual layout — system as root,
// then home as alice — and checks that alice's profile was activated by
// alice, with an agent living in her own state dir, not by root in a
// directory she owns. Then it tries the attack the old layout allowed: a
// profile activated as root in alice's per-user directory, where she can
// re-point its links between nix-env --set and the activation. The root
// agent refuses it before touching anything.
func TestEachProfileRunsAsItsUser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const node = "h01"
	home := func(settings map[string]any) func(map[string]fixture.HostConf) {
		return func(hosts map[string]fixture.HostConf) {
			hc := hosts[node]
			hc.Node = map[string]any{"profilesOrder": []string{"system", "home"}, "sudo": asUser}
			hc.HomeProfiles = map[string]map[string]any{"home": settings}
			hosts[node] = hc
		}
	}
	_, s := newSandbox(t, sandboxOpts{topology: testhost.Direct(1), tweak: home(map[string]any{"user": alice})})
	h := s.fleet.Host(node)
	withAlice(ctx, t, h)

	r := s.tether(ctx, "deploy", node)
	if r.code != exitOK {
		t.Fatalf("deploy system and alice's home: %s", r)
	}
	want := fmt.Sprintf("%d|/nix/var/nix/profiles/per-user/alice/home", aliceUID)
	if got := homeActivations(ctx, h); len(got) != 1 || got[0] != want {
		t.Fatalf("home activations %q, want one by uid %d: %q", got, aliceUID, want)
	}
	owner := hostSh(ctx, t, h, `stat -c '%u %a' "$1"`, aliceHome+"/.local/state/tether")
	if strings.TrimSpace(owner) != fmt.Sprintf("%d 700", aliceUID) {
		t.Errorf("alice's state dir is %q, want owned by her, mode 700", owner)
	}
	if out := hostSh(ctx, t, h, `ls /var/lib/tether | grep -c '^agent-' || true`); strings.TrimSpace(out) != "1" {
		t.Errorf("root's state dir holds %s agents, want 1", strings.TrimSpace(out))
	}

	// The attack: a profile root would activate inside alice's directory.
	hosts, err := HostConfs(s.fleet)
	if err != nil {
		t.Fatal(err)
	}
	home(map[string]any{"user": "root", "profilePath": "/nix/var/nix/profiles/per-user/alice/evil"})(hosts)
	if _, err := (fixture.Config{Hosts: hosts}).Prepare(s.flakeDir); err != nil {
		t.Fatal(err)
	}
	r = s.tether(ctx, "deploy", node)
	if r.code != exitFailed {
		t.Fatalf("deploy of a root profile in alice's directory: exit %d, want %d\n%s", r.code, exitFailed, r)
	}
	res := result(t, r, node)
	if res.Status == deploy.StatusDeployed || !strings.Contains(res.Error, "/nix/var/nix/profiles/per-user/alice belongs to uid 4242") {
		t.Errorf("status %s, error %q; want the profile refused, naming alice's directory", res.Status, res.Error)
	}
	if got := homeActivations(ctx, h); len(got) != 1 {
		t.Errorf("home activations after the refused deploy: %q, want still only alice's", got)
	}
	if _, err := h.Exec(ctx, "test", "-e", "/nix/var/nix/profiles/per-user/alice/evil"); err == nil {
		t.Error("root set a profile in alice's directory")
	}
}

// TestPreparedStateDirStopsTheDeploy: with tempPath = /tmp, a local user
// makes /tmp/tether before the first deploy and waits to swap the agent.
// The deploy fails for that node with an error naming the setting, and
// nothing is uploaded to the node or run on it.
func TestPreparedStateDirStopsTheDeploy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const node = "h01"
	_, s := newSandbox(t, sandboxOpts{topology: testhost.Direct(1), tweak: func(hosts map[string]fixture.HostConf) {
		hc := hosts[node]
		hc.TempPath = "/tmp"
		hosts[node] = hc
	}})
	h := s.fleet.Host(node)
	hostSh(ctx, t, h, `setpriv --reuid=4242 --regid=4242 --clear-groups -- sh -c 'mkdir -m 777 /tmp/tether && echo "#!/bin/sh" > /tmp/tether/evil'`)

	r := s.tether(ctx, "deploy", node)
	if r.code != exitFailed {
		t.Fatalf("deploy with a prepared /tmp/tether: exit %d, want %d\n%s", r.code, exitFailed, r)
	}
	res := result(t, r, node)
	if !strings.Contains(res.Error, "cannot live in /tmp/tether") || !strings.Contains(res.Error, "tempPath (set at ") {
		t.Errorf("error %q, want it to refuse /tmp/tether and name the tempPath setting", res.Error)
	}
	if left := hostSh(ctx, t, h, `ls -A /tmp/tether`); strings.TrimSpace(left) != "evil" {
		t.Errorf("/tmp/tether holds %q: the deployer put something there", left)
	}
	if _, err := h.Exec(ctx, "test", "-e", fixture.HistoryFile); err == nil {
		t.Error("an activation ran on the node")
	}
}
