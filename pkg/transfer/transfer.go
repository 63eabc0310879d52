// Package transfer moves closures between Nix stores over tether's own SSH
// connections: it asks the destination which paths it lacks, lets it fetch
// what it can from its own binary caches, and streams an export of the rest
// straight into an import on the far side.
//
// Nothing is buffered whole: the export is piped into the SSH session as it
// is produced, so memory stays flat however large the closure. nix-store
// --import registers each path only once it is complete, so a copy cut half
// way leaves the destination consistent, and the next copy sends only the
// paths that did not arrive.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tetherdeploy/tether/pkg/nix"
)

// Store is one end of a copy: a nix runner pointed at a store, locally or
// through a remote Executor.
type Store = *nix.Runner

// Options tune one copy.
type Options struct {
	// Substitute lets the destination fetch missing paths from its own
	// binary caches before anything is sent. Off for nodes marked
	// fastConnection, where sending is cheaper than a cache round trip.
	Substitute bool
	// BatchPaths caps how many paths one export/import pair carries, to
	// stay under the destination's command-line limit; 0 means 1000.
	BatchPaths int
	// Progress is called as bytes go out (at most every ProgressEvery) and
	// once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// CompressedImport, when set, is the destination's command that reads
	// a zstd-compressed export stream (the agent's `import --zstd`): the
	// stream is then compressed on the way. Worth it on a slow link; on a
	// fast one the compressor can be the bottleneck.
	CompressedImport []string
	// Closure is the closure of the roots, references first, when the
	// caller has it already (see nix.Subclosure); nil: src is asked.
	Closure []nix.PathInfo
	// CacheWait bounds how long the destination's binary caches may take
	// to say what they have before the paths are sent instead; 0 means
	// DefaultCacheWait.
	CacheWait time.Duration
}

// Progress is the state of a running copy.
type Progress struct {
	Sent, Total int64 // NAR bytes
	Paths       int   // paths sent so far
	TotalPaths  int   // paths to send
}

// Stats describe a finished copy.
type Stats struct {
	Closure      int   // paths in the closure
	ClosureBytes int64 // NAR bytes of the closure
	Present      int   // paths the destination already had
	Substituted  int   // paths it fetched from its own caches
	Sent         int   // paths streamed to it
	SentBytes    int64 // bytes streamed to it (compressed, when compressing)
	StreamBytes  int64 // bytes of export stream before compression
	// CachesUnreachable says why the destination's binary caches could
	// not be asked ("http://cache.lan unreachable", "no answer within
	// 5s"); the paths were sent instead. Empty when they answered, or
	// when substitution was off.
	CachesUnreachable string
}

// Copy makes every path in the closure of roots valid in dst, reading them
// from src.
func Copy(ctx context.Context, src, dst Store, roots []string, opts Options) (Stats, error) {
	var st Stats
	closure := opts.Closure
	if closure == nil {
		var err error
		if closure, err = src.Closure(ctx, roots); err != nil {
			return st, fmt.Errorf("closure of %d roots: %w", len(roots), err)
		}
	}
	st.Closure = len(closure)
	sizes := make(map[string]int64, len(closure))
	paths := make([]string, len(closure))
	for i, p := range closure {
		paths[i] = p.Path
		sizes[p.Path] = p.NarSize
		st.ClosureBytes += p.NarSize
	}

	missing, err := dst.Missing(ctx, paths)
	if err != nil {
		return st, fmt.Errorf("ask destination for missing paths: %w", err)
	}
	st.Present = len(paths) - len(missing)
	if len(missing) > 0 && opts.Substitute {
		before := len(missing)
		missing, st.CachesUnreachable, err = Substitute(ctx, dst, missing, opts.CacheWait)
		if err != nil {
			return st, err
		}
		st.Substituted = before - len(missing)
	}
	if len(missing) == 0 {
		report(opts.Progress, Progress{})
		return st, nil
	}

	// Missing keeps the closure's order, references first: the order
	// nix-store --import needs, batch after batch.
	var total int64
	for _, p := range missing {
		total += sizes[p]
	}
	meter := &meter{total: total, totalPaths: len(missing), fn: opts.Progress, every: opts.ProgressEvery}
	defer meter.stop()
	batch := opts.BatchPaths
	if batch <= 0 {
		batch = 1000
	}
	for start := 0; start < len(missing); start += batch {
		end := min(start+batch, len(missing))
		part := missing[start:end]
		n, raw, err := stream(ctx, src, dst, part, meter, opts.CompressedImport)
		st.SentBytes += n
		st.StreamBytes += raw
		if err != nil {
			return st, err
		}
		st.Sent += len(part)
		var partBytes int64
		for _, p := range part {
			partBytes += sizes[p]
		}
		meter.pathsDone(len(part), partBytes)
	}
	meter.flush()
	return st, nil
}

// The destination's caches are first asked what they have, within
// bounds: a cache it cannot reach (no route, no DNS, down) must cost
// about a second, once, not nix's retries on every copy. cacheConnect is
// how long each cache gets to connect, DefaultCacheWait how long the
// whole question may take by default.
const (
	cacheConnect     = time.Second
	DefaultCacheWait = 5 * time.Second
)

// Substitute asks the destination's binary caches which of the missing
// paths they have, lets it fetch those, and returns the paths still
// missing, which are to be sent, with why the caches could not be asked
// ("" when they could). A path no cache has is not an error.
//
// wait bounds the question (0: DefaultCacheWait).
func Substitute(ctx context.Context, dst Store, missing []string, wait time.Duration) ([]string, string, error) {
	if wait <= 0 {
		wait = DefaultCacheWait
	}
	actx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	limits := nix.CacheLimits{ConnectTimeout: cacheConnect}
	have, err := dst.Substitutable(actx, missing, limits)
	switch {
	case ctx.Err() != nil:
		return nil, "", fmt.Errorf("ask the destination's binary caches: %w", context.Cause(ctx))
	case actx.Err() != nil:
		return missing, fmt.Sprintf("no answer within %s", wait), nil
	case err != nil:
		return missing, "asking them failed: " + firstLine(err.Error()), nil
	}
	unreachable := ""
	if len(have.Unreachable) > 0 {
		unreachable = strings.Join(have.Unreachable, ", ") + " unreachable"
	} else {
		// All answered: let the fetch retry as nix does.
		limits = nix.CacheLimits{}
	}
	if len(have.Paths) == 0 {
		return missing, unreachable, nil
	}
	// Failures (a cache losing a path meanwhile) leave paths for the
	// stream.
	_ = dst.Substitute(ctx, have.Paths, limits)
	still, err := dst.Missing(ctx, missing)
	if err != nil {
		return nil, "", fmt.Errorf("ask destination for missing paths after substitution: %w", err)
	}
	return still, unreachable, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// stream pipes `nix-store --export paths` on src into `nix-store --import`
// on dst and returns the bytes that went through.
//
// When one end fails the other is stopped, and the error returned is the
// one that explains the failure: an importer that stopped (disk full, link
// cut) makes the exporter fail only with a broken pipe, and a failed export
// makes the importer fail only with a truncated stream. Taking whichever
// error arrived first would often hide nix's own message.
func stream(ctx context.Context, src, dst Store, paths []string, m *meter, compressedImport []string) (sent, raw int64, err error) {
	pr, pw := io.Pipe()
	compress := len(compressedImport) > 0
	// Progress counts export bytes; sent counts what went on the wire.
	counted := &countingReader{r: pr, m: m, quiet: compress}
	exported := &countingWriter{w: pw}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var exportErr, importErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if !compress {
			exportErr = src.Export(sctx, paths, exported)
		} else {
			exportErr = exportCompressed(sctx, src, paths, pw, exported, m)
		}
		// The importer sees the end of the stream, or why it broke.
		pw.CloseWithError(exportErr)
	}()
	go func() {
		defer wg.Done()
		if !compress {
			_, importErr = dst.Import(sctx, counted)
		} else {
			importErr = dst.Run(sctx, compressedImport, counted, io.Discard)
		}
		if importErr != nil {
			// Before the pipe closes, so the exporter's broken pipe
			// is seen as the stop it is.
			stop()
		}
		// Unblock the exporter if the importer stopped reading.
		pr.CloseWithError(errImportEnded)
	}()
	wg.Wait()
	sent, raw = counted.n.Load(), exported.n.Load()
	switch {
	case exportErr == nil && importErr == nil:
		return sent, raw, nil
	case ctx.Err() != nil:
		return sent, raw, fmt.Errorf("stream %d paths: %w", len(paths), context.Cause(ctx))
	case importErr != nil && (exportErr == nil || errors.Is(exportErr, errImportEnded) || errors.Is(exportErr, context.Canceled)):
		return sent, raw, fmt.Errorf("import on destination: %w", importErr)
	case errors.Is(exportErr, errImportEnded):
		return sent, raw, errors.New("destination stopped reading the closure stream")
	default:
		return sent, raw, fmt.Errorf("export: %w", exportErr)
	}
}

// exportCompressed writes the export of paths to w, zstd-compressed,
// counting the uncompressed bytes in raw (and as progress). One encoder
// goroutine and the default window keep memory bounded.
func exportCompressed(ctx context.Context, src Store, paths []string, w io.Writer, raw *countingWriter, m *meter) error {
	enc, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return err
	}
	raw.w, raw.m = enc, m
	if err := src.Export(ctx, paths, raw); err != nil {
		enc.Close()
		return err
	}
	return enc.Close()
}

var errImportEnded = errors.New("import ended")

// countingReader counts what the importer took. A remote importer's
// session may still be inside Read when a failed Run has returned, so the
// count is atomic.
type countingReader struct {
	r     io.Reader
	n     atomic.Int64
	m     *meter
	quiet bool // count only; progress is counted elsewhere
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n.Add(int64(n))
		if !c.quiet {
			c.m.add(int64(n))
		}
	}
	return n, err
}

// countingWriter counts what the exporter writes, and reports it as
// progress when m is set.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
	m *meter
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if n > 0 {
		c.n.Add(int64(n))
		if c.m != nil {
			c.m.add(int64(n))
		}
	}
	return n, err
}

// meter turns stream bytes into Progress calls. The export stream is a
// little larger than the NARs it carries; Sent is capped below Total until
// the paths are confirmed imported.
type meter struct {
	mu         sync.Mutex
	fn         func(Progress)
	every      time.Duration
	last       time.Time
	total      int64
	totalPaths int
	done       int64 // NAR bytes of paths imported
	inflight   int64 // stream bytes of the current batch
	paths      int
	stopped    bool // Copy returned: no more calls
}

// stop ends the reports: a read left over from a failed stream must not
// call Progress after Copy has returned.
func (m *meter) stop() {
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
}

func (m *meter) add(n int64) {
	if m.fn == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	m.inflight += n
	every := m.every
	if every == 0 {
		every = 200 * time.Millisecond
	}
	if now := time.Now(); now.Sub(m.last) >= every {
		m.last = now
		m.fn(m.progress())
	}
}

func (m *meter) pathsDone(n int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.paths += n
	m.done += bytes
	m.inflight = 0
}

func (m *meter) flush() {
	if m.fn == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fn(m.progress())
}

func (m *meter) progress() Progress {
	sent := min(m.done+m.inflight, m.total)
	if m.paths < m.totalPaths && sent == m.total && m.total > 0 {
		sent = m.total - 1
	}
	return Progress{Sent: sent, Total: m.total, Paths: m.paths, TotalPaths: m.totalPaths}
}

func report(fn func(Progress), p Progress) {
	if fn != nil {
		fn(p)
	}
}
