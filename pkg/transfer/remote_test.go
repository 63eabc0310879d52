package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// fakeNixStore stands in for nix-store on the far side of an SSH
// connection: everything asked about is missing, imports are appended to
// $STORE/imported, and FAIL=<code> makes every command fail.
const fakeNixStore = `#!/bin/sh
if [ -n "${FAIL:-}" ]; then
	echo "error: opening lock file '/nix/var/nix/db/big-lock': Permission denied" >&2
	exit "$FAIL"
fi
case "$1" in
--check-validity) shift 2; for p; do echo "$p"; done ;;
--import) cat >> "$STORE/imported" ;;
*) echo "fake nix-store: unexpected $*" >&2; exit 99 ;;
esac
`

// remoteStore dials an in-process SSH server whose nix-store is
// fakeNixStore and returns a store on it and the fake's directory.
func remoteStore(t *testing.T, env ...string) (*nix.Runner, string, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nix-store"), []byte(fakeNixStore), 0o755); err != nil {
		t.Fatal(err)
	}
	signer := remotetest.NewSigner(t)
	srv := remotetest.NewServer(t, remotetest.Options{
		Name:           "target",
		AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()},
		Env:            append([]string{"PATH=" + dir + ":/usr/bin:/bin", "STORE=" + dir}, env...),
	})
	keys := remote.NewHostKeys()
	if err := keys.AddKnownHosts([]byte(srv.KnownHosts()), "test"); err != nil {
		t.Fatal(err)
	}
	d := &remote.Dialer{Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeys: keys, DefaultUser: "root", DialTimeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := d.Dial(ctx, remote.Target{Name: "target", Host: "127.0.0.1", Port: srv.Port()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var log bytes.Buffer
	return transfer.RemoteStore(c, &log), dir, &log
}

func TestRemoteStoreStreamsOverSSH(t *testing.T) {
	dst, dir, _ := remoteStore(t)
	src := &nix.FakeExecutor{}
	expectClosure(src)
	var stream string
	for _, b := range [][]string{{glibc, lib}, {conf, app}, {data}} {
		expectExport(src, b...)
		stream += exportOf(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := transfer.Copy(ctx, &nix.Runner{Exec: src}, dst, roots, transfer.Options{BatchPaths: 2})
	if err != nil {
		t.Fatal(err)
	}
	src.Check(t)
	if st.Sent != 5 || st.SentBytes != int64(len(stream)) {
		t.Errorf("Stats = %+v, want 5 paths, %d bytes", st, len(stream))
	}
	got, err := os.ReadFile(filepath.Join(dir, "imported"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != stream {
		t.Errorf("the far side imported %q, want %q", got, stream)
	}
}

func TestRemoteStoreKeepsExitCodeAndStderr(t *testing.T) {
	dst, _, log := remoteStore(t, "FAIL=3")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := dst.Missing(ctx, []string{app})
	var ce *nix.CmdError
	if !errors.As(err, &ce) {
		t.Fatalf("Missing = %v, want a *nix.CmdError", err)
	}
	if ce.ExitCode != 3 || !strings.Contains(ce.StderrTail, "Permission denied") {
		t.Errorf("CmdError = exit %d, stderr %q; want exit 3 and the remote stderr", ce.ExitCode, ce.StderrTail)
	}
	var ee *remote.ExitError
	if !errors.As(err, &ee) || ee.Status != 3 {
		t.Errorf("Missing = %v, want the *remote.ExitError underneath", err)
	}
	if !strings.Contains(log.String(), "Permission denied") {
		t.Errorf("log = %q, want the remote stderr", log.String())
	}
}
