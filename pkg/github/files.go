package github

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/tetherdeploy/tether/pkg/report"
)

// maxSummary is the most a step's job summary may hold; GitHub drops a
// larger one entirely.
const maxSummary = 1 << 20

var outputName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// output is one step output.
type output struct{ name, value string }

// writeOutputs appends outputs to the GITHUB_OUTPUT file in the multi-line
// form, each with its own random delimiter that does not occur in the
// value. A fixed delimiter could be written into a value by whoever
// controls it (a node name, an error from a pull request's build) to end
// the value early and set outputs of their own.
func writeOutputs(path string, outs []output) error {
	var b strings.Builder
	for _, o := range outs {
		if !outputName.MatchString(o.name) {
			return fmt.Errorf("write outputs: invalid name %q", o.name)
		}
		delim, err := delimiterFor(o.value)
		if err != nil {
			return fmt.Errorf("write outputs: %w", err)
		}
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", o.name, delim, o.value, delim)
	}
	return appendFile(path, b.String())
}

// delimiterFor returns a random delimiter that occurs nowhere in value.
func delimiterFor(value string) (string, error) {
	for range 10 {
		d := "tether_" + randomHex()
		if !strings.Contains(value, d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("no delimiter free of the value") // only with a broken random source
}

// summaryRoom is how many bytes may still be added to the job summary file.
func summaryRoom(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		return maxSummary
	}
	return max(0, maxSummary-int(fi.Size()))
}

// appendSummary adds Markdown to the job summary, cut at a line end if it
// would pass the limit.
func appendSummary(path, md string) error {
	return appendFile(path, report.Clip(md, summaryRoom(path)))
}

func appendFile(path, s string) error {
	if s == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
