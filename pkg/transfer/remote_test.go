package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// fakeNixStore stands in for nix-store on the far side of an SSH
// connection: everything asked about is missing, imports are appended to
// $STORE/imported, an export is $EXPORT_BYTES zero bytes, FAIL=<code>
// makes every command fail and ENDLESS=1 makes queries answer for ever.
const fakeNixStore = `#!/bin/sh
if [ -n "${FAIL:-}" ]; then
	echo "error: opening lock file '/nix/var/nix/db/big-lock': Permission denied" >&2
	exit "$FAIL"
fi
case "$1" in
--query) [ -n "${ENDLESS:-}" ] && exec yes /nix/store/00000000000000000000000000000000-endless; echo "$3" ;;
--export) head -c "$EXPORT_BYTES" /dev/zero ;;
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
	ctx := testenv.Context(t, 30*time.Second)
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
	ctx := testenv.Context(t, 30*time.Second)
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

// TestRemoteStoreCutsEndlessAnswers: a node that answers a closure query
// with an endless stream fails the query with an error naming it, once it
// has sent the transport's bound.
func TestRemoteStoreCutsEndlessAnswers(t *testing.T) {
	dst, _, _ := remoteStore(t, "ENDLESS=1")
	ctx := testenv.Context(t, 60*time.Second)
	_, err := dst.Closure(ctx, []string{app})
	var le *remote.OutputLimitError
	if !errors.As(err, &le) || le.Limit != remote.DefaultMaxOutput {
		t.Fatalf("Closure = %v, want an *remote.OutputLimitError at the default bound", err)
	}
	if want := "node target sent more than 16 MiB on stdout answering nix-store --query --requisites"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

// TestRemoteExportIsNotCut: an export is the closure itself, streamed to
// the importer as it comes; it may be larger than any query's answer.
func TestRemoteExportIsNotCut(t *testing.T) {
	const size = remote.DefaultMaxOutput + 1<<20
	src, _, _ := remoteStore(t, fmt.Sprintf("EXPORT_BYTES=%d", size))
	ctx := testenv.Context(t, 60*time.Second)
	var n countWriter
	if err := src.Export(ctx, []string{app}, &n); err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Errorf("export delivered %d bytes, want %d", n, size)
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
