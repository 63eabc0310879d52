package deploy

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// AgentSource finds the tether-agent binary for a target architecture.
type AgentSource interface {
	// Agent returns the local path of the agent for GOARCH goarch and the
	// hex SHA-256 of its content.
	Agent(goarch string) (path, sum string, err error)
}

// AgentDir finds agents named tether-agent-linux-<arch> in a directory, as
// scripts/build-agents.sh lays them out.
type AgentDir struct {
	Dir string

	mu   sync.Mutex
	sums map[string]string
}

// Agent implements AgentSource.
func (a *AgentDir) Agent(goarch string) (string, string, error) {
	p := filepath.Join(a.Dir, agent.AgentFileName(goarch))
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.sums[p]; ok {
		return p, s, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", "", fmt.Errorf("no tether-agent for linux/%s in %s (build it with scripts/build-agents.sh): %w", goarch, a.Dir, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", fmt.Errorf("read agent %s: %w", p, err)
	}
	s := hex.EncodeToString(h.Sum(nil))
	if a.sums == nil {
		a.sums = map[string]string{}
	}
	a.sums[p] = s
	return p, s, nil
}

// agentHome is where one user's agent lives on a node and how the
// deployer runs it. Each profile's agent runs as the profile's user
// (through the node's sudo command when that is not the SSH user), from a
// state dir that only this user and root can write (DESIGN §5.1): root's
// is <tempPath>/tether, /var/lib/tether unless tempPath moves it; another
// user's is its own $XDG_STATE_HOME/tether (~/.local/state/tether), as the
// node reports it. tempPath does not move another user's state dir: a
// directory shared by two users is writable by one of them on the other's
// behalf.
type agentHome struct {
	node string
	key  string // homeKey of the profiles it serves
	// user is who the agent runs as; prefix switches to that user, nil
	// when it is the SSH user.
	user   string
	prefix []string
	// settings are those of the first profile run as this user (its
	// tempPath and where that was set).
	settings fleet.Settings
	stateDir string // learnt by install
	path     string // the agent binary, once installed
}

func newAgentHome(node string, s fleet.Settings) *agentHome {
	h := &agentHome{node: node, key: homeKey(s), user: s.SSHUser, settings: s}
	if s.User != "" && s.User != s.SSHUser {
		h.user, h.prefix = s.User, sudoPrefix(s)
	}
	return h
}

// homeKey names the agent home a profile with settings s uses: profiles
// run as the same user share one.
func homeKey(s fleet.Settings) string {
	if s.User != "" && s.User != s.SSHUser {
		return s.User
	}
	return ""
}

// sudoPrefix is the command that switches to s.User: the node's sudo
// command (split on white space, never given to a shell) with -n added to
// sudo unless interactiveSudo, then the user.
func sudoPrefix(s fleet.Settings) []string {
	prefix := strings.Fields(s.Sudo)
	if len(prefix) == 0 {
		prefix = strings.Fields(fleet.DefaultSudo)
	}
	out := slices.Clone(prefix[:1])
	if !s.InteractiveSudo && prefix[0] == "sudo" {
		out = append(out, "-n")
	}
	out = append(out, prefix[1:]...)
	return append(out, s.User)
}

// argv runs argv as the home's user.
func (h *agentHome) argv(argv []string) []string {
	return append(slices.Clone(h.prefix), argv...)
}

// output runs a fixed shell program as the home's user with args as its
// positional parameters: paths and modes reach it only as data.
func (h *agentHome) output(ctx context.Context, c *remote.Client, script string, args ...string) ([]byte, error) {
	return c.Output(ctx, h.argv(append([]string{"sh", "-c", script, "sh"}, args...))...)
}

// Shell programs the deployer runs to place an agent. User data reaches
// them only as positional parameters.
const (
	// probeScript tells who the agent's user is and where its home is.
	probeScript = `id -u && printf '%s\n' "${XDG_STATE_HOME-}" "${HOME-}"`
	// checkScript reports, in one round trip, the user (and the one that
	// ran sudo), the machine, and for each of its arguments "-" when it
	// does not exist or its owner and raw mode (lstat: a symbolic link is
	// reported as one). stat -c '%u %f' means the same to coreutils and
	// busybox.
	checkScript = `id -u || exit 1
printf '%s\n' "${SUDO_UID-}"
uname -m || exit 1
for p do
	if [ -e "$p" ] || [ -L "$p" ]; then stat -c '%u %f' "$p" || exit 1; else echo -; fi
done`
	// mkdirScript creates directories that did not exist, in order, each
	// with its mode; mkdir without -p fails on one that appeared since.
	mkdirScript = `umask 077; while [ $# -gt 1 ]; do mkdir -m "$1" "$2" || exit 1; shift 2; done`
	// receiveScript writes stdin (gzip-compressed with $1 = gz) to a new
	// file $2 — noclobber: never into one that exists — and prints its
	// sha256.
	receiveScript = `umask 077; set -C; if [ "$1" = gz ]; then gzip -dc > "$2"; else cat > "$2"; fi && sha256sum "$2"`
	// commitScript makes the checked upload the agent.
	commitScript = `chmod 755 "$1" && mv -f "$1" "$2"`
)

// install makes sure the home's user has the agent for the node's
// architecture in its state dir, and sets h.stateDir and h.path.
//
// The order is what keeps another user of the node out (a user who made
// /tmp/tether before the first deploy could rename a program of their own
// over the agent once its hash had been checked, and be run as root):
//
//  1. every existing component of the state dir's path is checked from
//     here, in one command, before anything is uploaded or run: a real
//     directory, owned by root or the agent's user, writable by nobody
//     else (agent.UnsafeDir). A directory that fails is refused by name.
//     Since each directory passed, nobody else can create, rename or
//     replace anything below it from then on;
//  2. missing directories are created one by one (no -p: one that
//     appeared in between is an error) and checked again;
//  3. the agent is uploaded to a fresh random name, created exclusively,
//     its hash is checked, and only then is it renamed into place. Two
//     deploys at once write two files and rename the same content.
func (h *agentHome) install(ctx context.Context, c *remote.Client, src AgentSource) error {
	dir, err := h.locate(ctx, c)
	if err != nil {
		return err
	}
	st, err := h.check(ctx, c, dir)
	if err != nil {
		return err
	}
	if len(st.missing) > 0 {
		var args []string
		for i, p := range st.missing {
			mode := "755"
			if i == len(st.missing)-1 {
				mode = "700" // the state dir itself
			}
			args = append(args, mode, p)
		}
		if _, err := h.output(ctx, c, mkdirScript, args...); err != nil {
			return fmt.Errorf("create state dir %s: %w", dir, err)
		}
		if st, err = h.check(ctx, c, dir); err != nil {
			return err
		}
		if len(st.missing) > 0 {
			return fmt.Errorf("create state dir %s: %s still does not exist", dir, st.missing[0])
		}
	}
	goarch, err := agent.GOARCH(st.machine)
	if err != nil {
		return err
	}
	local, sum, err := src.Agent(goarch)
	if err != nil {
		return err
	}
	h.stateDir = dir
	dst := agent.AgentPath(dir, sum)
	if out, err := c.Output(ctx, h.argv([]string{"sha256sum", dst})...); err == nil && firstField(out) == sum {
		h.path = dst
		return nil
	}
	if err := h.upload(ctx, c, local, sum, dst); err != nil {
		return err
	}
	h.path = dst
	return nil
}

// locate says where the home's state dir is: root's from tempPath; another
// user's from its home, as the node reports it.
func (h *agentHome) locate(ctx context.Context, c *remote.Client) (string, error) {
	if h.user == "root" {
		return agent.StateDir(h.settings.TempPath), nil
	}
	out, err := h.output(ctx, c, probeScript)
	if err != nil {
		return "", fmt.Errorf("find the state dir of user %s: %w", h.user, err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 3 {
		return "", fmt.Errorf("find the state dir of user %s: unexpected answer %q", h.user, out)
	}
	if lines[0] == "0" {
		return agent.StateDir(h.settings.TempPath), nil
	}
	usable := func(d string) bool { return filepath.IsAbs(d) && filepath.Clean(d) != "/" }
	switch {
	case usable(lines[1]):
		return filepath.Join(lines[1], "tether"), nil
	case usable(lines[2]):
		return filepath.Join(lines[2], ".local", "state", "tether"), nil
	}
	return "", fmt.Errorf("user %s on node %s has no home directory to keep its agent in (HOME=%q)", h.user, h.node, lines[2])
}

// dirState is what checkScript found.
type dirState struct {
	machine string
	missing []string // the components that do not exist, outermost first
}

// check runs checkScript over dir and its parents and refuses any that
// another user could change.
func (h *agentHome) check(ctx context.Context, c *remote.Client, dir string) (dirState, error) {
	comps := agent.PathPrefixes(dir)
	out, err := h.output(ctx, c, checkScript, comps...)
	if err != nil {
		return dirState{}, fmt.Errorf("check state dir %s: %w", dir, err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	bad := func() (dirState, error) {
		return dirState{}, fmt.Errorf("check state dir %s: unexpected answer %q", dir, out)
	}
	if len(lines) != 3+len(comps) {
		return bad()
	}
	uid, err := strconv.Atoi(lines[0])
	if err != nil {
		return bad()
	}
	owners := []int{uid}
	if sudoer, err := strconv.Atoi(lines[1]); err == nil && len(h.prefix) > 0 && h.prefix[0] == "sudo" {
		// The user who ran sudo may become this user anyway.
		owners = append(owners, sudoer)
	}
	st := dirState{machine: strings.TrimSpace(lines[2])}
	for i, comp := range comps {
		line := lines[3+i]
		if line == "-" {
			st.missing = append(st.missing, comp)
			continue
		}
		if len(st.missing) > 0 {
			return bad() // a child of a missing directory
		}
		var owner int
		var mode uint32
		if _, err := fmt.Sscanf(line, "%d %x", &owner, &mode); err != nil {
			return bad()
		}
		if why := agent.UnsafeDir(owner, mode, owners); why != "" {
			return dirState{}, h.unsafe(dir, comp, why)
		}
	}
	return st, nil
}

// unsafe is the error for a state dir another user could have prepared,
// saying what to change.
func (h *agentHome) unsafe(dir, comp, why string) error {
	msg := fmt.Sprintf("node %s: %s %s, so the agent of user %s cannot live in %s: another user could replace it", h.node, comp, why, h.user, dir)
	if o := h.settings.Origins[fleet.KeyTempPath]; h.user == "root" && o.Source != "" && o.Source != fleet.OriginDefault {
		msg += fmt.Sprintf("; tempPath (set at %s) must name a directory only root can write, such as %s (the default)", o, fleet.DefaultTempPath)
	}
	return errors.New(msg)
}

// upload sends the agent to a fresh file in the state dir, checks what
// arrived and renames it into place. It goes gzip-compressed when the node
// has gzip (it halves the one upload a new node or agent version costs,
// which on a home uplink is most of a first deploy's overhead), else as it
// is.
func (h *agentHome) upload(ctx context.Context, c *remote.Client, local, sum, dst string) error {
	p := payloadFor(local, sum)
	if p.err != nil {
		return p.err
	}
	tmp := uploadName(dst)
	got, err := h.receive(ctx, c, "gz", tmp, bytes.NewReader(p.gz))
	if err != nil {
		h.remove(ctx, c, tmp)
		f, ferr := os.Open(local)
		if ferr != nil {
			return fmt.Errorf("read agent: %w", ferr)
		}
		defer f.Close()
		tmp = uploadName(dst)
		if got, err = h.receive(ctx, c, "raw", tmp, f); err != nil {
			h.remove(ctx, c, tmp)
			return fmt.Errorf("upload agent: %w", err)
		}
	}
	if got != sum {
		h.remove(ctx, c, tmp)
		return fmt.Errorf("uploaded agent %s has sha256 %q, want %s", tmp, got, sum)
	}
	if _, err := h.output(ctx, c, commitScript, tmp, dst); err != nil {
		h.remove(ctx, c, tmp)
		return fmt.Errorf("put agent in place: %w", err)
	}
	return nil
}

// uploadName is a fresh name beside dst for an upload in progress.
func uploadName(dst string) string {
	var rnd [8]byte
	rand.Read(rnd[:])
	return filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+"."+hex.EncodeToString(rnd[:])+".upload")
}

func (h *agentHome) receive(ctx context.Context, c *remote.Client, format, tmp string, r io.Reader) (string, error) {
	var out bytes.Buffer
	err := c.Run(ctx, remote.Cmd{Argv: h.argv([]string{"sh", "-c", receiveScript, "sh", format, tmp}), Stdin: r, Stdout: &out})
	return firstField(out.Bytes()), err
}

// remove deletes a failed upload, briefly, even when ctx was cancelled.
func (h *agentHome) remove(ctx context.Context, c *remote.Client, path string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	c.Output(ctx, h.argv([]string{"rm", "-f", path})...)
}

// agentPayload is an agent gzipped, compressed once per content however
// many nodes get it: compressing costs about as much CPU as the rest of a
// node's deploy.
type agentPayload struct {
	once sync.Once
	gz   []byte
	err  error
}

// payloads holds an agentPayload per content hash.
var payloads sync.Map

func payloadFor(local, sum string) *agentPayload {
	v, _ := payloads.LoadOrStore(sum, &agentPayload{})
	p := v.(*agentPayload)
	p.once.Do(func() {
		data, err := os.ReadFile(local)
		if err != nil {
			p.err = fmt.Errorf("read agent: %w", err)
			return
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz) // the best level saves 0.3% for 3× the CPU
		zw.Write(data)
		zw.Close()
		p.gz = gz.Bytes()
	})
	return p
}

// firstField is the first word of a command's output: the hash in
// sha256sum's.
func firstField(out []byte) string {
	f := bytes.Fields(out)
	if len(f) == 0 {
		return ""
	}
	return string(f[0])
}
