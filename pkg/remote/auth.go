package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// AuthSources says where the deployer's SSH identity comes from. cmd/ fills it
// from flags, action inputs and the environment; this package reads no
// environment variables itself.
type AuthSources struct {
	// PrivateKeys are key files' contents held in memory (an action input or
	// secret), OpenSSH or PEM format, without passphrase.
	PrivateKeys [][]byte
	// KeyFiles are private key files (-i, IdentityFile).
	KeyFiles []string
	// AgentSocket is the path of a running agent's socket (SSH_AUTH_SOCK).
	AgentSocket string
	// Home is the user's home directory; ~/.ssh/id_* are tried from it.
	Home string
	// Logf receives notes about skipped keys; nil discards them.
	Logf func(format string, args ...any)
}

// Auth holds the loaded identity. When explicit keys are given (PrivateKeys
// or KeyFiles) only they are used, as a CI job expects: the job's key and
// nothing that happens to be on the runner. Otherwise the agent's keys come
// first, then ~/.ssh/id_*, as at a terminal.
type Auth struct {
	signers   []ssh.Signer
	raw       []any
	explicit  bool
	agent     agent.ExtendedAgent
	agentConn net.Conn

	once    sync.Once
	keyring agent.Agent
}

// homeKeyNames are tried in this order, the order ssh uses; hardware-backed
// (-sk) keys cannot be used without their device and are left out.
var homeKeyNames = []string{"id_rsa", "id_ecdsa", "id_ed25519"}

// LoadAuth loads keys and connects to the agent. It fails when no usable
// credential is found, or when an explicitly given key cannot be used.
func LoadAuth(src AuthSources) (*Auth, error) {
	logf := src.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	a := &Auth{}
	for i, pem := range src.PrivateKeys {
		if err := a.addKey(pem); err != nil {
			return nil, fmt.Errorf("private key #%d: %w", i+1, err)
		}
		a.explicit = true
	}
	for _, f := range src.KeyFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		if err := a.addKey(pem); err != nil {
			return nil, fmt.Errorf("private key %s: %w", f, err)
		}
		a.explicit = true
	}
	if a.explicit {
		return a, nil
	}
	var problems []error
	if src.AgentSocket != "" {
		conn, err := net.Dial("unix", src.AgentSocket)
		if err != nil {
			problems = append(problems, fmt.Errorf("agent: %w", err))
			logf("ssh agent at %s not usable: %v", src.AgentSocket, err)
		} else {
			a.agentConn, a.agent = conn, agent.NewClient(conn)
		}
	}
	if src.Home != "" {
		for _, name := range homeKeyNames {
			f := filepath.Join(src.Home, ".ssh", name)
			pem, err := os.ReadFile(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err == nil {
				err = a.addKey(pem)
			}
			if err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", f, err))
				logf("skipping %s: %v", f, err)
			}
		}
	}
	if a.agent == nil && len(a.signers) == 0 {
		problems = append(problems, errors.New("no private key given, no agent socket and no usable ~/.ssh/id_* key"))
		return nil, fmt.Errorf("no SSH credentials: %w", errors.Join(problems...))
	}
	return a, nil
}

func (a *Auth) addKey(pem []byte) error {
	raw, err := ssh.ParseRawPrivateKey(pem)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return errors.New("key is protected by a passphrase; use a key without one or load it into an agent")
	}
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return err
	}
	a.signers = append(a.signers, signer)
	a.raw = append(a.raw, raw)
	return nil
}

// Methods returns the SSH authentication methods for Dialer.Auth.
func (a *Auth) Methods() []ssh.AuthMethod {
	return []ssh.AuthMethod{ssh.PublicKeysCallback(a.allSigners)}
}

func (a *Auth) allSigners() ([]ssh.Signer, error) {
	var out []ssh.Signer
	if a.agent != nil {
		// An agent that went away leaves the key files usable.
		if s, err := a.agent.Signers(); err == nil {
			out = append(out, s...)
		}
	}
	return append(out, a.signers...), nil
}

// Agent returns the agent to forward to a builder (Client.ForwardAgent): the
// running agent when it is the identity, otherwise an in-memory agent holding
// the loaded keys (a CI job has no agent of its own).
func (a *Auth) Agent() agent.Agent {
	if a.agent != nil && !a.explicit {
		return a.agent
	}
	a.once.Do(func() {
		kr := agent.NewKeyring()
		for _, k := range a.raw {
			// Keys were parsed above; Add only rejects types the
			// signer constructor already refused.
			_ = kr.Add(agent.AddedKey{PrivateKey: k})
		}
		a.keyring = kr
	})
	return a.keyring
}

// Close disconnects from the agent.
func (a *Auth) Close() error {
	if a.agentConn != nil {
		return a.agentConn.Close()
	}
	return nil
}
