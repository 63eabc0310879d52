package agent

import (
	"errors"
	"io"
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
