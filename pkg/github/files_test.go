package github

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteOutputsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output")
	if err := os.WriteFile(path, []byte("earlier=step\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostile := "line one\n_GitHubActionsFileCommandDelimeter_\nEOF\nfailed<<EOF\nx\nEOF\n"
	outs := []output{{"result", hostile}, {"deployed", "frame1 rpi"}, {"failed", ""}}
	if err := writeOutputs(path, outs); err != nil {
		t.Fatal(err)
	}
	got := readOutputs(t, path)
	want := map[string]string{"earlier": "step", "result": hostile, "deployed": "frame1 rpi", "failed": ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outputs read back as %q\nwant %q", got, want)
	}
	if err := writeOutputs(path, []output{{"bad name", "x"}}); err == nil {
		t.Error("an invalid output name was written")
	}
}

func TestDelimiterIsRandomAndAbsent(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		d, err := delimiterFor("value")
		if err != nil {
			t.Fatal(err)
		}
		if seen[d] {
			t.Fatalf("delimiter %q repeated", d)
		}
		seen[d] = true
	}
}

func TestAppendSummaryStaysUnderLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "summary")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), maxSummary-100), 0o644); err != nil {
		t.Fatal(err)
	}
	if summaryRoom(path) != 100 {
		t.Fatalf("room = %d", summaryRoom(path))
	}
	if err := appendSummary(path, strings.Repeat("a line of text\n", 20)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if len(b) > maxSummary || !bytes.HasSuffix(b, []byte("text\n")) {
		t.Errorf("summary is %d bytes, ends %q", len(b), b[len(b)-10:])
	}
	if summaryRoom(filepath.Join(t.TempDir(), "none")) != maxSummary {
		t.Error("a missing summary file has all the room")
	}
}

func TestRedactWriterAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	s := newSecrets("-----BEGIN KEY-----\nAAAAsecretline1\nBBBBsecretline2\nab\n-----END KEY-----\n", "tok_123456")
	w := &redactWriter{w: &out, s: s}
	for _, part := range []string{"first AAAAsec", "retline1 and tok_", "123456\nsecond BBBB", "secretline2 ab", " tail"} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	want := "first *** and ***\nsecond *** ab tail"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestProgressGuardsCommandsAndHoldsNodeLogs(t *testing.T) {
	var out bytes.Buffer
	log := &jobLog{w: &out}
	p := newProgress(log, nil)
	fmt.Fprint(p, "plain line\n")
	fmt.Fprint(p, "::error::"+pwned+"\n")
	fmt.Fprint(p.Node("frame1"), "held ")
	fmt.Fprint(p.Node("frame1"), "line\n##[set-output name=x]y")
	fmt.Fprint(log, "::notice::tether's own\n")
	fmt.Fprint(p, "partial")
	p.finish()
	log.close()
	// Lines in a row share one block; tether's own line ends it.
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8 || lines[1] != "plain line" || lines[2] != "::error::"+pwned || lines[4] != "::notice::tether's own" || lines[6] != "partial" {
		t.Errorf("live output:\n%s", out.String())
	}
	if lines[0] == lines[5] || !strings.HasPrefix(lines[0], "::stop-commands::") || !strings.HasPrefix(lines[5], "::stop-commands::") {
		t.Errorf("two blocks do not have their own tokens:\n%s", out.String())
	}
	checkNoHostileCommand(t, "progress", out.String())
	if cmds, _ := runnerCommands(out.String()); len(cmds) != 5 || cmds[2].Data != "tether's own" {
		t.Errorf("commands the runner runs: %+v, want two blocks and tether's notice", cmds)
	}
	lines, dropped, ok := p.takeNode("frame1")
	if !ok || dropped != 0 || fmt.Sprint(lines) != "[held line ##[set-output name=x]y]" {
		t.Errorf("held lines %q dropped %d ok %v", lines, dropped, ok)
	}
	if len(p.remaining()) != 0 {
		t.Error("a taken node remains")
	}

	for i := range maxHeldLines + 10 {
		fmt.Fprintf(p.Node("rpi"), "line %d\n", i)
	}
	lines, dropped, _ = p.takeNode("rpi")
	if len(lines)+dropped != maxHeldLines+10 || lines[len(lines)-1] != fmt.Sprintf("line %d", maxHeldLines+9) {
		t.Errorf("kept %d, dropped %d, last %q", len(lines), dropped, lines[len(lines)-1])
	}

	var nilP *Progress
	fmt.Fprint(nilP, "discarded\n")
	fmt.Fprint(nilP.Node("x"), "discarded\n")
	nilP.Selected([]string{"x"})
}

func TestSelectedOnce(t *testing.T) {
	var calls [][]string
	p := newProgress(&jobLog{w: io.Discard}, func(n []string) { calls = append(calls, n) })
	p.Selected([]string{"a", "b"})
	p.Selected([]string{"c"})
	if fmt.Sprint(calls) != "[[a b]]" {
		t.Errorf("calls = %v", calls)
	}
}
