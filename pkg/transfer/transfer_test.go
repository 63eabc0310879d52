package transfer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// A closure whose references-first order (glibc, lib, conf, app, data)
// differs from the alphabetical one, so a copy that sorted by name would
// be caught:
//
//	app → lib → glibc, app → conf → glibc; data stands alone.
var (
	app   = storePath("a", "app-1.0")
	lib   = storePath("b", "lib-2.1")
	conf  = storePath("c", "conf")
	glibc = storePath("d", "glibc-2.39")
	data  = storePath("e", "data")

	closure = []fakePath{
		{path: app, size: 4000, refs: []string{app, conf, lib}},
		{path: lib, size: 3000, refs: []string{glibc}},
		{path: conf, size: 200, refs: []string{glibc}},
		{path: glibc, size: 9000},
		{path: data, size: 1200},
	}
	roots     = []string{app, data}
	importOrd = []string{glibc, lib, conf, app, data} // references first
)

func storePath(hashChar, name string) string {
	return "/nix/store/" + strings.Repeat(hashChar, 32) + "-" + name
}

type fakePath struct {
	path string
	size int64
	refs []string
}

func sizeOf(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		for _, c := range closure {
			if c.path == p {
				n += c.size
			}
		}
	}
	return n
}

// expectClosure teaches the source fake the two queries Closure makes:
// the requisites of roots (printed alphabetically, as nix does not sort
// them references first) and their registration records.
func expectClosure(f *nix.FakeExecutor) {
	var paths []string
	for _, c := range closure {
		paths = append(paths, c.path)
	}
	slices.Sort(paths)
	f.Expect(append([]string{"nix-store", "--query", "--requisites"}, roots...), strings.Join(paths, "\n")+"\n")
	var db strings.Builder
	for _, p := range paths {
		for _, c := range closure {
			if c.path != p {
				continue
			}
			fmt.Fprintf(&db, "%s\n%s\n%d\n\n%d\n", c.path, strings.Repeat("0", 64), c.size, len(c.refs))
			for _, r := range c.refs {
				db.WriteString(r + "\n")
			}
		}
	}
	f.Expect(append([]string{"nix-store", "--dump-db"}, paths...), db.String())
}

// expectMissing teaches the destination fake which of the asked paths it
// lacks.
func expectMissing(f *nix.FakeExecutor, asked, missing []string) *nix.FakeCall {
	return f.Expect(append([]string{"nix-store", "--check-validity", "--print-invalid"}, asked...), lines(missing))
}

func expectExport(f *nix.FakeExecutor, paths ...string) *nix.FakeCall {
	return f.Expect(append([]string{"nix-store", "--export"}, paths...), exportOf(paths))
}

func expectImport(f *nix.FakeExecutor) *nix.FakeCall {
	return f.Expect([]string{"nix-store", "--import"}, "")
}

// exportOf is what the fake exporter writes for paths: a little more than
// their NAR sizes, as a real export stream is.
func exportOf(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "<%s:", p)
		b.WriteString(strings.Repeat("x", int(sizeOf(p))))
		b.WriteString(">")
	}
	return b.String()
}

func lines(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	return strings.Join(paths, "\n") + "\n"
}

// recorder runs commands through an executor and remembers their argv in
// the order they started.
// A command holding a word of hang never answers: it ends only when its
// context does.
type recorder struct {
	nix.Executor
	mu   sync.Mutex
	argv [][]string
	hang []string
}

func (r *recorder) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	r.mu.Lock()
	r.argv = append(r.argv, slices.Clone(argv))
	r.mu.Unlock()
	for _, w := range r.hang {
		if slices.Contains(argv, w) {
			<-ctx.Done()
			return ctx.Err()
		}
	}
	return r.Executor.Run(ctx, argv, stdin, stdout, stderr)
}

// calls returns the argv of the commands run whose second word is op
// ("--export"), with the command words taken off.
func (r *recorder) calls(op string) [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]string
	for _, a := range r.argv {
		if len(a) > 1 && a[1] == op {
			out = append(out, a[2:])
		}
	}
	return out
}

// index is the place of the first command holding word among those run.
func (r *recorder) index(word string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.IndexFunc(r.argv, func(a []string) bool { return len(a) > 1 && slices.Contains(a[1:], word) })
}

// ends is a source and destination each answering from a FakeExecutor.
type ends struct {
	src, dst       *nix.FakeExecutor
	srcRec, dstRec *recorder
}

func newEnds(t *testing.T) *ends {
	e := &ends{src: &nix.FakeExecutor{}, dst: &nix.FakeExecutor{}}
	e.srcRec = &recorder{Executor: e.src}
	e.dstRec = &recorder{Executor: e.dst}
	t.Cleanup(func() {
		e.src.Check(t)
		e.dst.Check(t)
	})
	expectClosure(e.src)
	return e
}

func (e *ends) copy(t *testing.T, opts transfer.Options) (transfer.Stats, error) {
	t.Helper()
	return copyWithin30s(t, e.srcRec, e.dstRec, opts)
}

// copyWithin30s copies the test closure from src to dst and fails the test
// if Copy has not returned 30s later: a deadlock fails, it does not hang.
func copyWithin30s(t *testing.T, src, dst nix.Executor, opts transfer.Options) (transfer.Stats, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := transfer.Copy(ctx, &nix.Runner{Exec: src}, &nix.Runner{Exec: dst}, roots, opts)
	if ctx.Err() != nil {
		t.Fatalf("Copy did not return before its 30s deadline (deadlock?): %v", err)
	}
	return st, err
}

var closureBytes = sizeOf(app, lib, conf, glibc, data)

func TestCopyNothingMissing(t *testing.T) {
	for _, substitute := range []bool{false, true} {
		t.Run("substitute="+strconv.FormatBool(substitute), func(t *testing.T) {
			e := newEnds(t)
			expectMissing(e.dst, importOrd, nil)
			var progress []transfer.Progress
			st, err := e.copy(t, transfer.Options{
				Substitute: substitute,
				Progress:   func(p transfer.Progress) { progress = append(progress, p) },
			})
			if err != nil {
				t.Fatal(err)
			}
			want := transfer.Stats{Closure: 5, ClosureBytes: closureBytes, Present: 5}
			if diff := cmp.Diff(want, st); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
			// The fakes fail any export, import or substitution.
			if n := len(e.srcRec.calls("--export")) + len(e.dstRec.calls("--import")) + len(e.dstRec.calls("--realise")); n != 0 {
				t.Errorf("%d export/import/substitute commands ran for a destination that has everything", n)
			}
			if len(progress) != 1 || progress[0] != (transfer.Progress{}) {
				t.Errorf("progress = %+v, want one empty report", progress)
			}
		})
	}
}

// dryRun is what nix-store --realise --dry-run prints when the caches
// have fetch and the warnings say nothing else.
func dryRun(fetch []string, warnings ...string) string {
	var b strings.Builder
	for _, w := range warnings {
		b.WriteString("warning: " + w + "\n")
	}
	if len(fetch) > 0 {
		fmt.Fprintf(&b, "these %d paths will be fetched (0.01 MiB download, 0.03 MiB unpacked):\n", len(fetch))
		for _, p := range fetch {
			b.WriteString("  " + p + "\n")
		}
	}
	return b.String()
}

var bounded = []string{"--option", "connect-timeout", "1", "--option", "download-attempts", "1"}

func TestCopySubstitutesFirst(t *testing.T) {
	missing := []string{glibc, app, data}
	unreachable := "unable to download 'http://10.0.0.1/nix-cache-info': Couldn't connect to server (7)"
	tests := []struct {
		name       string
		substitute bool
		dryRun     string   // what the caches say they have
		fetch      []string // what is then fetched, nil for no fetch
		fetchArgs  []string // the fetch's options
		fetchFails bool
		afterFetch []string // still missing after it
		wantSent   []string
		wantNote   string
		substd     int
	}{
		{name: "caches have some", substitute: true, dryRun: dryRun([]string{glibc, data}),
			fetch: []string{glibc, data}, afterFetch: []string{app}, wantSent: []string{app}, substd: 2},
		{name: "caches have all", substitute: true, dryRun: dryRun(missing), fetch: missing, substd: 3},
		{name: "caches have none: nothing fetched", substitute: true,
			dryRun: "don't know how to build these paths:\n  " + strings.Join(missing, "\n  ") + "\n", wantSent: missing},
		{name: "the fetch fails", substitute: true, dryRun: dryRun([]string{glibc}), fetch: []string{glibc}, fetchFails: true,
			afterFetch: missing, wantSent: missing},
		// One cache unreachable: the fetch from the other is bounded too,
		// or nix would retry the unreachable one for seconds.
		{name: "one cache unreachable, another has some", substitute: true, dryRun: dryRun([]string{glibc}, unreachable),
			fetch: []string{glibc}, fetchArgs: bounded, afterFetch: []string{app, data}, wantSent: []string{app, data}, substd: 1,
			wantNote: "http://10.0.0.1 unreachable"},
		{name: "every cache unreachable", substitute: true,
			dryRun: dryRun(nil, unreachable, "'https://cache.lan' does not appear to be a binary cache",
				"unable to download 'https://cache.lan/"+strings.Repeat("a", 32)+".narinfo': Couldn't resolve host name (6)"),
			wantSent: missing, wantNote: "http://10.0.0.1, https://cache.lan unreachable"},
		{name: "off", substitute: false, wantSent: missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnds(t)
			expectMissing(e.dst, importOrd, missing)
			if tt.substitute {
				c := e.dst.Expect(append(append([]string{"nix-store", "--realise", "--dry-run"}, bounded...), missing...), "")
				c.Stderr = tt.dryRun
			}
			if tt.fetch != nil {
				c := e.dst.Expect(append(append([]string{"nix-store", "--realise", "--ignore-unknown"}, tt.fetchArgs...), tt.fetch...), "")
				if tt.fetchFails {
					c.ExitCode = 1
					c.Stderr = "error: path '" + glibc + "' is required, but there is no substituter that can build it\n"
				}
				expectMissing(e.dst, missing, tt.afterFetch)
			}
			var imp *nix.FakeCall
			if len(tt.wantSent) > 0 {
				expectExport(e.src, tt.wantSent...)
				imp = expectImport(e.dst)
			}
			st, err := e.copy(t, transfer.Options{Substitute: tt.substitute})
			if err != nil {
				t.Fatal(err)
			}
			want := transfer.Stats{
				Closure: 5, ClosureBytes: closureBytes, Present: 2, Substituted: tt.substd,
				Sent: len(tt.wantSent), SentBytes: int64(len(exportOf(tt.wantSent))), StreamBytes: int64(len(exportOf(tt.wantSent))),
				CachesUnreachable: tt.wantNote,
			}
			if diff := cmp.Diff(want, st); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
			if imp != nil && imp.Stdin.String() != exportOf(tt.wantSent) {
				t.Errorf("destination imported %q, want %q", imp.Stdin.String(), exportOf(tt.wantSent))
			}
			if tt.fetch != nil && len(tt.wantSent) > 0 && e.dstRec.index("--ignore-unknown") > e.dstRec.index("--import") {
				t.Errorf("import ran before substitution: %v", e.dstRec.argv)
			}
		})
	}
}

// A destination whose caches do not answer at all: the copy sends after a
// bounded wait and says why.
func TestCopySendsWhenTheCachesDoNotAnswer(t *testing.T) {
	e := newEnds(t)
	missing := []string{glibc, app, data}
	expectMissing(e.dst, importOrd, missing)
	e.dstRec.hang = []string{"--dry-run"}
	expectExport(e.src, missing...)
	expectImport(e.dst)
	st, err := e.copy(t, transfer.Options{Substitute: true, CacheWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 3 || st.CachesUnreachable != "no answer within 50ms" {
		t.Errorf("sent %d paths, caches %q; want 3 sent and why the caches were not used", st.Sent, st.CachesUnreachable)
	}
}

func TestCopyBatchesKeepReferencesFirst(t *testing.T) {
	tests := []struct {
		batch int
		want  [][]string
	}{
		{batch: 0, want: [][]string{importOrd}},
		{batch: 1, want: [][]string{{glibc}, {lib}, {conf}, {app}, {data}}},
		{batch: 2, want: [][]string{{glibc, lib}, {conf, app}, {data}}},
		{batch: 4, want: [][]string{{glibc, lib, conf, app}, {data}}},
		{batch: 5, want: [][]string{importOrd}},
		{batch: 99, want: [][]string{importOrd}},
	}
	for _, tt := range tests {
		t.Run("batch="+strconv.Itoa(tt.batch), func(t *testing.T) {
			e := newEnds(t)
			expectMissing(e.dst, importOrd, importOrd)
			var stream string
			for _, b := range tt.want {
				expectExport(e.src, b...)
				stream += exportOf(b)
			}
			imp := expectImport(e.dst)
			st, err := e.copy(t, transfer.Options{BatchPaths: tt.batch})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, e.srcRec.calls("--export")); diff != "" {
				t.Errorf("exports (-want +got):\n%s", diff)
			}
			if imp.Calls != len(tt.want) {
				t.Errorf("%d imports for %d batches", imp.Calls, len(tt.want))
			}
			if imp.Stdin.String() != stream {
				t.Errorf("destination read\n%s\nwant\n%s", imp.Stdin.String(), stream)
			}
			if st.Sent != 5 || st.SentBytes != int64(len(stream)) {
				t.Errorf("Stats = %+v, want 5 paths and %d bytes sent", st, len(stream))
			}
		})
	}
}

func TestCopyProgress(t *testing.T) {
	for _, batch := range []int{0, 2} {
		t.Run("batch="+strconv.Itoa(batch), func(t *testing.T) {
			e := newEnds(t)
			missing := []string{glibc, lib, app, data}
			expectMissing(e.dst, importOrd, missing)
			batches := [][]string{missing}
			if batch == 2 {
				batches = [][]string{{glibc, lib}, {app, data}}
			}
			for _, b := range batches {
				expectExport(e.src, b...)
			}
			expectImport(e.dst)
			var mu sync.Mutex
			var got []transfer.Progress
			_, err := e.copy(t, transfer.Options{
				BatchPaths:    batch,
				ProgressEvery: time.Nanosecond,
				Progress: func(p transfer.Progress) {
					mu.Lock()
					got = append(got, p)
					mu.Unlock()
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			total := sizeOf(missing...)
			if len(got) < 2 {
				t.Fatalf("progress reported %d times (%+v), want progress while sending and at the end", len(got), got)
			}
			var prev transfer.Progress
			for i, p := range got {
				if p.Total != total || p.TotalPaths != len(missing) {
					t.Errorf("progress %d = %+v, want totals %d bytes, %d paths", i, p, total, len(missing))
				}
				if p.Sent > p.Total || p.Paths > p.TotalPaths {
					t.Errorf("progress %d = %+v: more sent than there is", i, p)
				}
				if p.Paths < p.TotalPaths && p.Sent >= p.Total {
					t.Errorf("progress %d = %+v: all bytes reported before the paths are in", i, p)
				}
				if p.Sent < prev.Sent || p.Paths < prev.Paths {
					t.Errorf("progress went backwards: %+v after %+v", p, prev)
				}
				prev = p
			}
			last := got[len(got)-1]
			if want := (transfer.Progress{Sent: total, Total: total, Paths: len(missing), TotalPaths: len(missing)}); last != want {
				t.Errorf("last progress = %+v, want %+v", last, want)
			}
		})
	}
}

// scripted answers export and import with functions and every other
// command from a FakeExecutor.
type scripted struct {
	*nix.FakeExecutor
	export func(ctx context.Context, stdout io.Writer) error
	imp    func(ctx context.Context, stdin io.Reader, stderr io.Writer) error
}

func (s *scripted) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	switch {
	case len(argv) > 1 && argv[1] == "--export" && s.export != nil:
		return s.export(ctx, stdout)
	case len(argv) > 1 && argv[1] == "--import" && s.imp != nil:
		return s.imp(ctx, stdin, stderr)
	}
	return s.FakeExecutor.Run(ctx, argv, stdin, stdout, stderr)
}

// scriptedEnds are a source holding the test closure and a destination
// lacking all of it, whose export and import the test scripts.
func scriptedEnds() (src, dst *scripted) {
	src = &scripted{FakeExecutor: &nix.FakeExecutor{}}
	dst = &scripted{FakeExecutor: &nix.FakeExecutor{}}
	expectClosure(src.FakeExecutor)
	expectMissing(dst.FakeExecutor, importOrd, importOrd)
	return src, dst
}

type exitCode int

func (e exitCode) Error() string { return "exit status " + strconv.Itoa(int(e)) }
func (e exitCode) ExitCode() int { return int(e) }

// endlessExport writes until its reader goes away, as nix-store --export of
// a huge closure does; it reports when it has returned.
func endlessExport(returned chan<- error) func(context.Context, io.Writer) error {
	return func(ctx context.Context, w io.Writer) error {
		buf := make([]byte, 4096)
		for {
			if _, err := w.Write(buf); err != nil {
				returned <- err
				return err
			}
		}
	}
}

func TestCopyImporterFailureStopsExporter(t *testing.T) {
	tests := []struct {
		name string
		read int64 // bytes the importer reads before failing
	}{
		{name: "fails at once", read: 0},
		{name: "fails mid-stream", read: 10_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := scriptedEnds()
			exportReturned := make(chan error, 1)
			src.export = endlessExport(exportReturned)
			dst.imp = func(ctx context.Context, stdin io.Reader, stderr io.Writer) error {
				if _, err := io.CopyN(io.Discard, stdin, tt.read); err != nil {
					return err
				}
				io.WriteString(stderr, "error: writing to file: No space left on device\n")
				return exitCode(1)
			}
			// Which end notices first is a race; run it often enough
			// that the wrong error would show.
			for range 100 {
				st, err := copyWithin30s(t, src, dst, transfer.Options{})
				if err == nil {
					t.Fatal("Copy succeeded though the destination failed")
				}
				if !strings.Contains(err.Error(), "No space left on device") || !strings.Contains(err.Error(), "import") {
					t.Fatalf("Copy error = %v\nwant the importer's failure with its stderr", err)
				}
				var ce *nix.CmdError
				if !errors.As(err, &ce) || ce.ExitCode != 1 {
					t.Fatalf("Copy error = %v, want the import's *nix.CmdError with exit code 1", err)
				}
				select {
				case <-exportReturned:
				default:
					t.Fatal("Copy returned while the exporter was still writing")
				}
				if st.Sent != 0 {
					t.Fatalf("Stats.Sent = %d after a failed import, want 0", st.Sent)
				}
			}
		})
	}
}

func TestCopyExporterFailureReported(t *testing.T) {
	src, dst := scriptedEnds()
	src.export = func(ctx context.Context, w io.Writer) error {
		io.WriteString(w, "partial stream")
		return errors.New("error: path '" + glibc + "' is not valid")
	}
	importReturned := make(chan error, 1)
	dst.imp = func(ctx context.Context, stdin io.Reader, stderr io.Writer) error {
		_, err := io.Copy(io.Discard, stdin)
		if err == nil {
			err = errors.New("error: unexpected end-of-file")
			io.WriteString(stderr, err.Error()+"\n")
		}
		importReturned <- err
		return exitCode(1)
	}
	_, err := copyWithin30s(t, src, dst, transfer.Options{})
	if err == nil || !strings.Contains(err.Error(), "is not valid") || !strings.Contains(err.Error(), "export") {
		t.Errorf("Copy error = %v, want the exporter's failure", err)
	}
	select {
	case <-importReturned:
	default:
		t.Error("Copy returned while the importer was still reading")
	}
}

func TestCopyCancelled(t *testing.T) {
	src, dst := scriptedEnds()
	exportReturned := make(chan error, 1)
	src.export = endlessExport(exportReturned)
	ctx, cancel := context.WithCancel(context.Background())
	dst.imp = func(ctx context.Context, stdin io.Reader, stderr io.Writer) error {
		// Read until the deploy is cancelled, then stop as a killed
		// command does.
		buf := make([]byte, 4096)
		for n := 0; ; n++ {
			if n == 10 {
				cancel()
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if _, err := stdin.Read(buf); err != nil {
				return err
			}
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := transfer.Copy(ctx, &nix.Runner{Exec: src}, &nix.Runner{Exec: dst}, roots, transfer.Options{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Copy error = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Copy did not return within 30s of its context being cancelled")
	}
}

// A remote importer whose connection dies returns while its session may
// still be reading the stream; nothing of that may reach Progress once
// Copy has returned.
func TestCopyNoProgressAfterReturn(t *testing.T) {
	src, dst := scriptedEnds()
	src.export = endlessExport(make(chan error, 1))
	leftover := make(chan struct{})
	dst.imp = func(ctx context.Context, stdin io.Reader, stderr io.Writer) error {
		go func() {
			defer close(leftover)
			io.Copy(io.Discard, stdin)
		}()
		time.Sleep(time.Millisecond)
		return errors.New("connection to frame1 closed: EOF")
	}
	var returned, late atomic.Bool
	_, err := transfer.Copy(context.Background(), &nix.Runner{Exec: src}, &nix.Runner{Exec: dst}, roots, transfer.Options{
		ProgressEvery: time.Nanosecond,
		Progress: func(transfer.Progress) {
			if returned.Load() {
				late.Store(true)
			}
		},
	})
	returned.Store(true)
	if err == nil || !strings.Contains(err.Error(), "connection to frame1 closed") {
		t.Errorf("Copy error = %v, want the importer's connection error", err)
	}
	<-leftover
	if late.Load() {
		t.Error("Progress was called after Copy returned")
	}
}
