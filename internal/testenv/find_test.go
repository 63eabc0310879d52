package testenv_test

import (
	"testing"

	"github.com/tetherdeploy/tether/internal/testenv"
)

func TestFindReturnsTheFirstMatch(t *testing.T) {
	items := []string{"a1", "b1", "b2"}
	if got := testenv.Find(t, items, func(s string) bool { return s[0] == 'b' }, "no b"); got != "b1" {
		t.Errorf("Find = %q, want the first match b1", got)
	}
}

func TestFindWithoutMatchStopsTheTest(t *testing.T) {
	f, returned := run(t, func(f *fakeT) {
		testenv.Find(f, []string{"a"}, func(s string) bool { return s == "z" }, "no plan for %s", "z")
	})
	if returned || f.fatal != "no plan for z" {
		t.Errorf("returned %v, stopped with %q; want the test stopped with \"no plan for z\"", returned, f.fatal)
	}
}
