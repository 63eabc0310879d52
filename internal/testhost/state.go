package testhost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// State describes a running fleet to other processes: the demo and the
// benchmarks read the file `testhost up --state FILE` writes.
type State struct {
	Run        string      `json:"run"`
	PID        int         `json:"pid"`
	Dir        string      `json:"dir"`
	Topology   string      `json:"topology"`
	Relay      string      `json:"relay,omitempty"`   // host:port of the tunnel
	Control    string      `json:"control,omitempty"` // unix socket to steer the relay
	ClientKey  string      `json:"clientKey"`         // root's private key for every host
	KnownHosts string      `json:"knownHosts"`        // known_hosts file for every address
	Hosts      []HostState `json:"hosts"`
}

// HostState is one host in a State.
type HostState struct {
	Name    string `json:"name"`
	IP      string `json:"ip"`
	SSHAddr string `json:"sshAddr"`
	Via     string `json:"via,omitempty"`
	HostKey string `json:"hostKey"` // authorized_keys format
	Dir     string `json:"dir"`
	Netns   string `json:"netns"`
}

// State describes f; Control is left for the caller to fill in.
func (f *Fleet) State() State {
	s := State{
		Run: f.Run, PID: os.Getpid(), Dir: f.Dir, Topology: f.Topology.String(),
		ClientKey: f.ClientKeyPath, KnownHosts: f.KnownHostsPath,
	}
	if f.Relay != nil {
		s.Relay = f.Relay.Addr()
	}
	for _, h := range f.order {
		s.Hosts = append(s.Hosts, HostState{
			Name: h.Name, IP: h.IP.String(), SSHAddr: h.SSHAddr, Via: h.Via,
			HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostPublicKey))),
			Dir:     h.Dir, Netns: h.Netns,
		})
	}
	return s
}

// WriteState writes s to path atomically.
func WriteState(path string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}

// ReadState reads a state file.
func ReadState(path string) (State, error) {
	var s State
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if !runIDRe.MatchString(s.Run) {
		return s, fmt.Errorf("%s: bad run id %q", path, s.Run)
	}
	return s, nil
}

// Stop ends run id from another process: it asks the run's owner to stop
// (SIGTERM to the pid in owner.json while the owner holds the run's lock),
// waits for it, and removes whatever is left.
func Stop(ctx context.Context, id string, logf func(string, ...any)) error {
	if !runIDRe.MatchString(id) {
		return fmt.Errorf("bad run id %q", id)
	}
	for signalled := false; ; {
		lock, dead, err := tryLockRun(id)
		if err != nil {
			return err
		}
		if dead {
			lease := -1
			if o, ok := readOwner(id); ok {
				lease = o.Lease
			}
			err := removeRun(ctx, id, lease, logf)
			if lock != nil {
				lock.Close()
			}
			return err
		}
		if !signalled {
			o, ok := readOwner(id)
			if !ok || o.PID <= 1 {
				return fmt.Errorf("run %s is live but names no owner", id)
			}
			if logf != nil {
				logf("testhost: asking pid %d to stop run %s", o.PID, id)
			}
			if err := syscall.Kill(o.PID, syscall.SIGTERM); err != nil {
				return fmt.Errorf("stop run %s: signal owner %d: %w", id, o.PID, err)
			}
			signalled = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("run %s: owner did not stop: %w", id, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RelayStatus is what the relay control socket reports.
type RelayStatus struct {
	Cut       bool          `json:"cut"`
	Latency   time.Duration `json:"latencyNs"`
	RateUp    int64         `json:"rateUp"`
	RateDown  int64         `json:"rateDown"`
	BytesUp   int64         `json:"bytesUp"`
	BytesDown int64         `json:"bytesDown"`
	Conns     int           `json:"conns"`
	Accepted  int64         `json:"accepted"`
	Refused   int64         `json:"refused"`
	Error     string        `json:"error,omitempty"`
}

func (r *Relay) status() RelayStatus {
	up, down := r.Rates()
	return RelayStatus{
		Cut: r.IsCut(), Latency: r.Latency(), RateUp: up, RateDown: down,
		BytesUp: r.BytesUp(), BytesDown: r.BytesDown(), Conns: r.Conns(),
		Accepted: r.Accepted(), Refused: r.Refused(),
	}
}

// apply runs one control command: status | cut | restore | latency D |
// rate BYTES_PER_S | rates UP DOWN.
func (r *Relay) apply(words []string) error {
	if len(words) == 0 {
		return errors.New("empty command")
	}
	argc := map[string]int{"status": 1, "cut": 1, "restore": 1, "latency": 2, "rate": 2, "rates": 3}
	if n, ok := argc[words[0]]; !ok || len(words) != n {
		return fmt.Errorf("want one of: status, cut, restore, latency DURATION, rate BYTES_PER_S, rates UP DOWN; got %q", strings.Join(words, " "))
	}
	switch words[0] {
	case "cut":
		r.Cut()
	case "restore":
		r.Restore()
	case "latency":
		d, err := time.ParseDuration(words[1])
		if err != nil {
			return err
		}
		r.SetLatency(d)
	case "rate", "rates":
		var rates []int64
		for _, w := range words[1:] {
			n, err := strconv.ParseInt(w, 10, 64)
			if err != nil {
				return fmt.Errorf("rate %q: %w", w, err)
			}
			rates = append(rates, n)
		}
		if len(rates) == 1 {
			rates = append(rates, rates[0])
		}
		r.SetRates(rates[0], rates[1])
	}
	return nil
}

// ServeControl lets other processes steer r through a unix socket at path
// (one command line per connection, a RelayStatus JSON line back) until ctx
// ends.
func ServeControl(ctx context.Context, r *Relay, path string) error {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				st := RelayStatus{}
				if err == nil {
					err = r.apply(strings.Fields(line))
				}
				st = r.status()
				if err != nil {
					st.Error = err.Error()
				}
				_ = json.NewEncoder(c).Encode(st)
			}()
		}
	}()
	return nil
}

// Control sends one command to a relay control socket.
func Control(ctx context.Context, path string, words ...string) (RelayStatus, error) {
	var st RelayStatus
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
	if err != nil {
		return st, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintln(c, strings.Join(words, " ")); err != nil {
		return st, err
	}
	if err := json.NewDecoder(c).Decode(&st); err != nil {
		return st, err
	}
	if st.Error != "" {
		return st, errors.New(st.Error)
	}
	return st, nil
}
