package remote

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError reports a host key that is not pinned. Nothing was sent to the
// host: the handshake stops before authentication.
type HostKeyError struct {
	// Host is the name the key was looked up under, as it would appear in
	// known_hosts: "frame1", "[10.0.0.3]:2222", or the HostKeyAlias.
	Host string
	// Fingerprint is the SHA256 fingerprint of the key the host presented.
	Fingerprint string
	KeyType     string
	// Changed is true when other keys are pinned for this host: the host was
	// reinstalled, or someone is in the middle.
	Changed bool
	// Revoked is true when the key is marked @revoked.
	Revoked bool
	// Want lists the fingerprints pinned for the host.
	Want []string
	// Err is set when the check failed for another reason (for example a
	// host certificate from an unknown authority).
	Err error
}

func (e *HostKeyError) Error() string {
	switch {
	case e.Revoked:
		return fmt.Sprintf("host key %s %s for %s is revoked; refusing to connect", e.KeyType, e.Fingerprint, e.Host)
	case e.Changed:
		return fmt.Sprintf("host key for %s has CHANGED: it presented %s %s but the pinned key is %s; refusing to connect (the host was reinstalled or the connection is intercepted; update known_hosts/hostKey only after checking)",
			e.Host, e.KeyType, e.Fingerprint, strings.Join(e.Want, ", "))
	case e.Err != nil:
		return fmt.Sprintf("host key %s %s for %s not accepted: %v", e.KeyType, e.Fingerprint, e.Host, e.Err)
	default:
		return fmt.Sprintf("host key %s %s for %s is unknown: pin it in known_hosts or as the node's hostKey; refusing to connect", e.KeyType, e.Fingerprint, e.Host)
	}
}

func (e *HostKeyError) Unwrap() error { return e.Err }

// HostKeys is the set of pinned host keys, in known_hosts form. It is safe for
// concurrent use. There is no way to accept a key that is not in it.
type HostKeys struct {
	mu      sync.Mutex
	content bytes.Buffer
	hasCA   bool
	check   ssh.HostKeyCallback // built from content on first use
}

// NewHostKeys returns an empty set; every host is unknown until keys are added.
func NewHostKeys() *HostKeys { return &HostKeys{} }

// AddKnownHosts adds known_hosts content (plain, [host]:port, wildcard and
// hashed entries, @cert-authority and @revoked markers). A line that does not
// parse is an error naming source and line: a typo in a pinned key must not
// turn into a silent "unknown host" later.
func (h *HostKeys) AddKnownHosts(content []byte, source string) error {
	for i, line := range bytes.Split(content, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		marker, _, _, _, _, err := ssh.ParseKnownHosts(line)
		if err != nil {
			return fmt.Errorf("known hosts %s:%d: %w", source, i+1, err)
		}
		if marker == "cert-authority" {
			h.mu.Lock()
			h.hasCA = true
			h.mu.Unlock()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.content.Write(content)
	h.content.WriteByte('\n')
	h.check = nil
	return nil
}

// AddKnownHostsFile reads a known_hosts file into the set.
func (h *HostKeys) AddKnownHostsFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read known hosts: %w", err)
	}
	return h.AddKnownHosts(b, path)
}

// Pin adds one key, in authorized_keys format ("ssh-ed25519 AAAA... comment"),
// for host at port (port 0 means 22). host may be a HostKeyAlias.
func (h *HostKeys) Pin(host string, port int, key string) error {
	pk, err := parsePinnedKey(key)
	if err != nil {
		return fmt.Errorf("pin host key for %s: %w", host, err)
	}
	if port == 0 {
		port = 22
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(host, strconv.Itoa(port)))}, pk)
	return h.AddKnownHosts([]byte(line), "pin "+host)
}

func parsePinnedKey(key string) (ssh.PublicKey, error) {
	pk, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return nil, fmt.Errorf("parse host key %q: %w", key, err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("host key %q: more than one key", key)
	}
	return pk, nil
}

// callback builds the knownhosts checker from the accumulated content.
// knownhosts only reads files, so the content is handed over through a pipe
// opened by its /dev/fd name: nothing is written to disk.
func (h *HostKeys) callback() (ssh.HostKeyCallback, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.check != nil {
		return h.check, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("load known hosts: %w", err)
	}
	defer r.Close()
	content := bytes.Clone(h.content.Bytes())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Write(content)
		w.Close()
	}()
	cb, err := knownhosts.New("/dev/fd/" + strconv.Itoa(int(r.Fd())))
	r.Close() // unblocks the writer if knownhosts stopped early
	<-done
	if err != nil {
		return nil, fmt.Errorf("load known hosts: %w", err)
	}
	h.check = cb
	return cb, nil
}

// lookupAddr is the host:port a key is looked up under: the alias (port 22,
// as ssh does) when one is set, else the host and port dialled.
func lookupAddr(e endpoint) string {
	if e.alias != "" {
		return net.JoinHostPort(e.alias, "22")
	}
	return e.addr()
}

// Check accepts key for the host at addr (host:port) only if it is pinned.
// The error, if any, is a *HostKeyError.
func (h *HostKeys) Check(addr string, key ssh.PublicKey) error {
	cb, err := h.callback()
	if err != nil {
		return err
	}
	herr := &HostKeyError{
		Host:        knownhosts.Normalize(addr),
		Fingerprint: ssh.FingerprintSHA256(key),
		KeyType:     key.Type(),
	}
	err = cb(addr, fakeAddr(addr), key)
	var kerr *knownhosts.KeyError
	var rerr *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rerr):
		herr.Revoked = true
	case errors.As(err, &kerr):
		herr.Changed = len(kerr.Want) > 0
		for _, k := range kerr.Want {
			herr.Want = append(herr.Want, k.Key.Type()+" "+ssh.FingerprintSHA256(k.Key))
		}
	default:
		herr.Err = err
	}
	return herr
}

// probeKey is a key no host has; checking it returns every key pinned for a
// host, which is how the pinned key types are found (knownhosts has no lookup).
var probeKey = func() ssh.PublicKey {
	pub := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x74}, ed25519.SeedSize)).Public()
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pk
}()

// algorithms returns the host key algorithms to offer for addr: those of the
// pinned keys, so a host with several keys negotiates the one we hold (the
// library's default order would otherwise pick, say, ed25519 when only the
// RSA key is pinned and report it as unknown). nil means the default list.
func (h *HostKeys) algorithms(addr string) []string {
	cb, err := h.callback()
	if err != nil {
		return nil
	}
	h.mu.Lock()
	ca := h.hasCA
	h.mu.Unlock()
	if ca {
		return nil
	}
	var kerr *knownhosts.KeyError
	if err := cb(addr, fakeAddr(addr), probeKey); !errors.As(err, &kerr) {
		return nil
	}
	var algos []string
	for _, k := range kerr.Want {
		algos = appendAlgos(algos, k.Key.Type())
	}
	return algos
}

func appendAlgos(algos []string, keyType string) []string {
	add := []string{keyType}
	if keyType == ssh.KeyAlgoRSA {
		add = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	for _, a := range add {
		if !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	return algos
}

// fakeAddr gives knownhosts a remote address in host:port form for
// connections that have none (proxy commands, channels through a jump host).
type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
