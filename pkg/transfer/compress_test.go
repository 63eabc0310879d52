package transfer_test

import (
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tetherdeploy/tether/pkg/transfer"
)

// TestCopyCompressed sends the export stream through zstd to the
// destination's decompressing importer: what arrives decompresses to the
// exact export, fewer bytes cross the wire, and progress still counts the
// export's bytes.
func TestCopyCompressed(t *testing.T) {
	e := newEnds(t)
	expectMissing(e.dst, importOrd, importOrd)
	expectExport(e.src, importOrd...)
	importArgv := []string{"/tmp/tether/agent-abc", "import", "--zstd"}
	imp := e.dst.Expect(importArgv, "")
	var last transfer.Progress
	st, err := e.copy(t, transfer.Options{
		CompressedImport: importArgv,
		Progress:         func(p transfer.Progress) { last = p },
	})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(strings.NewReader(imp.Stdin.String()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(dec)
	if err != nil {
		t.Fatalf("the destination received no valid zstd stream: %v", err)
	}
	want := exportOf(importOrd)
	if string(got) != want {
		t.Fatalf("decompressed stream differs from the export (%d vs %d bytes)", len(got), len(want))
	}
	if st.StreamBytes != int64(len(want)) || st.SentBytes != int64(imp.Stdin.Len()) {
		t.Errorf("stats: stream %d sent %d; want %d and %d", st.StreamBytes, st.SentBytes, len(want), imp.Stdin.Len())
	}
	if st.SentBytes >= st.StreamBytes {
		t.Errorf("compression sent %d bytes for a %d-byte (repetitive) stream", st.SentBytes, st.StreamBytes)
	}
	if last.Sent != last.Total || last.Paths != len(importOrd) {
		t.Errorf("final progress %+v, want complete", last)
	}
}
