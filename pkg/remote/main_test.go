package remote

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// helperEnv selects a helper mode of the test binary, re-executed by tests:
// "pipe HOST PORT" joins stdin/stdout to a TCP connection (a proxy command),
// "agent-list" prints the keys of the agent at SSH_AUTH_SOCK (a command run
// on a node with agent forwarding), "env-dump FILE" writes its environment
// to FILE, "start-proxy LINE" starts LINE as a proxy command and waits for
// it to end.
const helperEnv = "TETHER_REMOTE_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "pipe":
		os.Exit(helperPipe(os.Args[1:]))
	case "agent-list":
		os.Exit(helperAgentList())
	case "env-dump":
		// A proxy command that writes down its environment.
		os.Exit(helperEnvDump(os.Args[1:]))
	case "start-proxy":
		// The deployer: start a proxy command as Dial does.
		os.Exit(helperStartProxy(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func helperPipe(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pipe HOST PORT")
		return 2
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(args[0], args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipe:", err)
		return 1
	}
	go func() {
		io.Copy(conn, os.Stdin)
		conn.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(os.Stdout, conn)
	return 0
}

func helperAgentList() int {
	conn, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-list:", err)
		return 1
	}
	keys, err := agent.NewClient(conn).List()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-list:", err)
		return 1
	}
	for _, k := range keys {
		fmt.Println(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
	}
	return 0
}

func helperEnvDump(args []string) int {
	if err := os.WriteFile(args[0], []byte(strings.Join(os.Environ(), "\x00")), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "env-dump:", err)
		return 1
	}
	return 0
}

func helperStartProxy(args []string) int {
	p, err := startProxy(endpoint{name: "frame1", host: "frame1.example", port: 22, proxyCommand: args[0]})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start-proxy:", err)
		return 1
	}
	io.Copy(io.Discard, p)
	p.Close()
	return 0
}
