package agent

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestEventReaderPartialLine(t *testing.T) {
	log := `{"seq":1,"time":"2026-01-01T00:00:00Z","type":"locked"}` + "\n" + `{"seq":2,"ti`
	er := NewEventReader(strings.NewReader(log), 100)
	if e, err := er.Next(); err != nil || e.Type != EventLocked {
		t.Fatalf("Next = %+v %v", e, err)
	}
	if _, err := er.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("partial line: %v", err)
	}
	if want := int64(100 + strings.IndexByte(log, '\n') + 1); er.Offset() != want {
		t.Errorf("offset = %d, want %d", er.Offset(), want)
	}
}

// TestEventReaderRefusesEndlessLine: a node that sends a line without end
// is refused after MaxEventLine bytes, not read into memory whole.
func TestEventReaderRefusesEndlessLine(t *testing.T) {
	endless := &countingReader{r: io.MultiReader(strings.NewReader(`{"seq":1,"type":"log","line":"`), zeros{})}
	er := NewEventReader(endless, 0)
	if _, err := er.Next(); !errors.Is(err, ErrEventTooLong) {
		t.Fatalf("Next = %v, want ErrEventTooLong", err)
	}
	if endless.n > MaxEventLine+128<<10 {
		t.Errorf("read %d bytes of one line before refusing it, want about %d", endless.n, MaxEventLine)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestStepsLeaveOutActivationOutput(t *testing.T) {
	evs := []Event{{Type: EventLocked}, {Type: EventLog, Line: "starting sshd"}, {Type: EventActivating}, {Type: EventLog}, {Type: EventDone}}
	if got, want := Steps(evs), []string{"locked", "activating", "done"}; !slices.Equal(got, want) {
		t.Errorf("Steps = %q, want %q", got, want)
	}
}
