package github

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// fakeTetherEnv makes this test binary stand in for the built tether in
// the action's run step: it prints its arguments and environment,
// NUL-separated, and exits. (A shell script cannot stand in: POSIX sh drops
// the INPUT_ names with hyphens that a real program receives.)
const fakeTetherEnv = "TETHER_TEST_FAKE_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(fakeTetherEnv) == "1" {
		fmt.Printf("args=%s\x00", strings.Join(os.Args[1:], " "))
		for _, kv := range os.Environ() {
			fmt.Printf("%s\x00", kv)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
