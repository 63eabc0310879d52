package app

import (
	"strings"
	"testing"
)

// TestDryActivateOutputIsBounded: a node whose dry activation prints
// without end is kept to the bound, and its plan says so.
func TestDryActivateOutputIsBounded(t *testing.T) {
	o := &nodeOutput{max: 1 << 10}
	line := strings.Repeat("x", 99)
	for range 1000 {
		o.add("rpi", line)
	}
	o.add("web", "would restart the following units: httpd.service")
	text, err := o.get("rpi")
	if err == nil || err.Error() != "node rpi sent more than 1 KiB answering dry-activate; the rest was not read" {
		t.Errorf("error %v, want one naming the node and the bound", err)
	}
	if len(text) > 1<<10 {
		t.Errorf("kept %d bytes of rpi's output, more than the bound", len(text))
	}
	if text, err := o.get("web"); err != nil || text != "would restart the following units: httpd.service\n" {
		t.Errorf("web: %q, %v; another node's output is untouched", text, err)
	}
}
