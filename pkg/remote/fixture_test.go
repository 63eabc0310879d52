package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os/exec"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
	"golang.org/x/crypto/ssh"
)

// fixture is a deployer identity plus pinned keys, and servers that accept
// that identity.
type fixture struct {
	t        *testing.T
	signer   ssh.Signer
	keyPEM   []byte
	hostKeys *HostKeys
	dialer   *Dialer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	signer, pem := remotetest.NewKey(t)
	f := &fixture{t: t, signer: signer, keyPEM: pem, hostKeys: NewHostKeys()}
	f.dialer = &Dialer{
		Auth:        []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeys:    f.hostKeys,
		DefaultUser: "deployer",
		DialTimeout: 20 * time.Second,
		Logf:        t.Logf,
	}
	return f
}

// server starts a server that lets the fixture's key in. Its key is not
// pinned: tests pin what they mean to.
func (f *fixture) server(opts remotetest.Options) *remotetest.Server {
	f.t.Helper()
	opts.AuthorizedKeys = append(opts.AuthorizedKeys, f.signer.PublicKey())
	return remotetest.NewServer(f.t, opts)
}

// pin adds known_hosts lines.
func (f *fixture) pin(lines string) {
	f.t.Helper()
	if err := f.hostKeys.AddKnownHosts([]byte(lines), "test"); err != nil {
		f.t.Fatal(err)
	}
}

// direct is a target for a server dialled at its real address.
func direct(name string, s *remotetest.Server) Target {
	return Target{Name: name, Host: "127.0.0.1", Port: s.Port()}
}

func (f *fixture) dial(t Target) *Client {
	f.t.Helper()
	c, err := f.dialer.Dial(context.Background(), t)
	if err != nil {
		f.t.Fatalf("Dial: %v", err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

var execCommand = exec.Command

func ed25519Key(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv, nil
}

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }
