package remote

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// forwardedSession runs, with agent forwarding granted signatures, a
// command that prints the socket the node made for the forwarded agent and
// waits for a line on stdin. It returns that socket and a function ending
// the command and returning Run's error. The remotetest server, like a
// compromised build host, keeps the socket listening for as long as the
// connection lives.
func forwardedSession(t *testing.T, c *Client, signatures int) (sock string, end func() error) {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- c.Run(context.Background(), Cmd{
			Argv:         []string{"sh", "-c", `echo "$SSH_AUTH_SOCK"; read line`},
			Stdin:        stdinR,
			Stdout:       stdoutW,
			ForwardAgent: true, AgentSignatures: signatures,
		})
		stdoutW.Close()
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		t.Fatalf("read the forwarded socket's path: %v", err)
	}
	go io.Copy(io.Discard, stdoutR)
	return strings.TrimSpace(line), func() error {
		stdinW.Write([]byte("done\n"))
		stdinW.Close()
		return <-done
	}
}

// nodeSigns asks the forwarded agent at sock, as a process on the node
// would, to sign with the deployer's key.
func nodeSigns(t *testing.T, sock string, key ssh.PublicKey) error {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("connect to the forwarded agent: %v", err)
	}
	defer conn.Close()
	data := make([]byte, 32)
	rand.Read(data)
	sig, err := agent.NewClient(conn).Sign(key, data)
	if err != nil {
		return err
	}
	if err := key.Verify(data, sig); err != nil {
		t.Fatalf("the forwarded agent returned a bad signature: %v", err)
	}
	return nil
}

func forwardingClient(t *testing.T) (*Client, ssh.PublicKey, agent.Agent) {
	t.Helper()
	f := newFixture(t)
	c, _, _ := webClient(t, f)
	keyring := agent.NewKeyring()
	_, priv, _ := ed25519Key(t)
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	if err := c.ForwardAgent(keyring); err != nil {
		t.Fatal(err)
	}
	signers, _ := keyring.Signers()
	return c, signers[0].PublicKey(), keyring
}

// TestForwardedAgentStopsWithItsCommand is the attack of a build host that
// keeps the forwarded agent after its copy: it connects to the socket once
// the command that was granted the key has ended, and asks for a signature.
func TestForwardedAgentStopsWithItsCommand(t *testing.T) {
	c, key, _ := forwardingClient(t)
	sock, end := forwardedSession(t, c, 1)
	if err := nodeSigns(t, sock, key); err != nil {
		t.Fatalf("a signature during the command: %v", err)
	}
	if err := end(); err != nil {
		t.Fatal(err)
	}
	if err := nodeSigns(t, sock, key); err == nil {
		t.Fatal("the node obtained a signature after the command that was granted the key had ended")
	}
}

// TestForwardedAgentCountsSignatures: a command granted one signature (a
// copy over one ssh hop) cannot obtain a second one while it runs.
func TestForwardedAgentCountsSignatures(t *testing.T) {
	c, key, _ := forwardingClient(t)
	sock, end := forwardedSession(t, c, 1)
	defer end()
	if err := nodeSigns(t, sock, key); err != nil {
		t.Fatalf("the granted signature: %v", err)
	}
	if err := nodeSigns(t, sock, key); err == nil {
		t.Fatal("the node obtained a second signature with only one granted")
	}
}

// TestForwardedAgentCannotBeChanged: the node cannot remove the deployer's
// keys, add its own or lock the agent, even while the gate is open.
func TestForwardedAgentCannotBeChanged(t *testing.T) {
	c, _, keyring := forwardingClient(t)
	sock, end := forwardedSession(t, c, 1)
	defer end()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	node := agent.NewClient(conn)
	if keys, err := node.List(); err != nil || len(keys) != 1 {
		t.Errorf("List while the command runs: %d keys, %v; want the deployer's key", len(keys), err)
	}
	_, other, _ := ed25519Key(t)
	for what, err := range map[string]error{
		"RemoveAll": node.RemoveAll(),
		"Add":       node.Add(agent.AddedKey{PrivateKey: other}),
		"Lock":      node.Lock([]byte("x")),
	} {
		if err == nil {
			t.Errorf("%s through the forwarded agent succeeded", what)
		}
	}
	if keys, _ := keyring.List(); len(keys) != 1 {
		t.Errorf("the deployer's agent holds %d keys after the node's attempts, want its 1", len(keys))
	}
}

// TestConcurrentGrantsDoNotOutliveTheirCommands: with two commands running,
// the grant of one that has ended is not left to the other.
func TestConcurrentGrantsDoNotOutliveTheirCommands(t *testing.T) {
	g := &forwardGate{a: agent.NewKeyring()}
	closeA := g.open(3)
	closeB := g.open(1)
	closeA() // A ended without signing
	if err := g.spend(); err != nil {
		t.Fatalf("B's signature: %v", err)
	}
	if err := g.spend(); !errors.Is(err, errGateSpent) {
		t.Errorf("a second signature for B: %v, want %v", err, errGateSpent)
	}
	closeB()
	if err := g.spend(); !errors.Is(err, errGateClosed) {
		t.Errorf("a signature with nothing running: %v, want %v", err, errGateClosed)
	}
}
