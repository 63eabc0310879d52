package remote

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// forwardGate is the agent a node is given when the deployer forwards its
// own (see Client.ForwardAgent). Without it, a build host handed the
// deployer's agent for one LAN copy could sign as the deploy key for as
// long as the connection lived, to log in anywhere that key opens, and
// could even remove the keys from the deployer's agent.
//
// Signatures cannot be told apart by the command they serve (the node
// opens a channel per agent connection, tied to no session), so the gate
// keeps one count: each command opening it adds its grant, and when one
// closes, what is left is cut to what the commands still running were
// granted. At any moment the node can obtain at most the signatures
// granted to the commands that run.
type forwardGate struct {
	a agent.Agent

	mu      sync.Mutex
	running int // commands with forwarding that run
	granted int // signatures granted to them
	left    int // signatures the node may still obtain
}

var (
	errGateClosed = errors.New("agent forwarding is closed: no command that was granted the deployer's key runs")
	errGateSpent  = errors.New("agent forwarding refused: the running commands have used every signature they were granted")
	errGateFixed  = errors.New("agent forwarding does not change the deployer's agent")
)

// open lets the node use the agent for n more signatures until the returned
// function is called.
func (g *forwardGate) open(n int) (close func()) {
	g.mu.Lock()
	g.running++
	g.granted += n
	g.left += n
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.running--
			g.granted -= n
			g.left = min(g.left, g.granted)
		})
	}
}

// spend takes one signature, or says why none is left.
func (g *forwardGate) spend() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.running == 0:
		return errGateClosed
	case g.left <= 0:
		return errGateSpent
	}
	g.left--
	return nil
}

func (g *forwardGate) isOpen() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running == 0 {
		return errGateClosed
	}
	return nil
}

// List implements agent.Agent while the gate is open: the node needs the
// public keys to offer them.
func (g *forwardGate) List() ([]*agent.Key, error) {
	if err := g.isOpen(); err != nil {
		return nil, err
	}
	return g.a.List()
}

// Sign implements agent.Agent within the gate's count.
func (g *forwardGate) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return g.SignWithFlags(key, data, 0)
}

// SignWithFlags implements agent.ExtendedAgent within the gate's count
// (RSA keys are asked for SHA-2 signatures with flags).
func (g *forwardGate) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	if err := g.spend(); err != nil {
		return nil, err
	}
	if ea, ok := g.a.(agent.ExtendedAgent); ok {
		return ea.SignWithFlags(key, data, flags)
	}
	if flags != 0 {
		return nil, fmt.Errorf("agent forwarding: the deployer's agent cannot sign with flags %d", flags)
	}
	return g.a.Sign(key, data)
}

// Add, Remove, RemoveAll, Lock, Unlock, Signers and Extension are refused:
// a node has no business changing or enumerating the deployer's agent.
func (g *forwardGate) Add(agent.AddedKey) error       { return errGateFixed }
func (g *forwardGate) Remove(ssh.PublicKey) error     { return errGateFixed }
func (g *forwardGate) RemoveAll() error               { return errGateFixed }
func (g *forwardGate) Lock([]byte) error              { return errGateFixed }
func (g *forwardGate) Unlock([]byte) error            { return errGateFixed }
func (g *forwardGate) Signers() ([]ssh.Signer, error) { return nil, errGateFixed }
func (g *forwardGate) Extension(string, []byte) ([]byte, error) {
	return nil, agent.ErrExtensionUnsupported
}

var _ agent.ExtendedAgent = (*forwardGate)(nil)
